using System.Globalization;
using System.Text;

namespace Saber.Checkpoints.Fixtures;

/// <summary>
/// Writes JSON as Hugging Face's <c>json.dumps(obj, indent=2, sort_keys=True)</c> does (config.json, the shard index,
/// generation_config.json): keys sorted, two-space indent, one array element a line, floats as Python prints them
/// (<c>500000.0</c>, <c>1e-05</c>). Objects are dictionaries, arrays lists; a <see cref="double"/> is a float, an
/// <see cref="int"/> or <see cref="long"/> an integer.
/// </summary>
internal static class PythonJson
{
    public static string Serialize(IReadOnlyDictionary<string, object?> root)
    {
        var text = new StringBuilder();
        Write(text, root, 0);
        text.Append('\n');
        return text.ToString();
    }

    private static void Write(StringBuilder text, object? value, int depth)
    {
        switch (value)
        {
            case null:
                text.Append("null");
                break;
            case bool flag:
                text.Append(flag ? "true" : "false");
                break;
            case int or long:
                text.Append(Convert.ToInt64(value, CultureInfo.InvariantCulture).ToString(CultureInfo.InvariantCulture));
                break;
            case double number:
                text.Append(PythonFloat(number));
                break;
            case string s:
                WriteString(text, s);
                break;
            case IReadOnlyDictionary<string, object?> map:
                if (map.Count == 0)
                {
                    text.Append("{}");
                    break;
                }
                text.Append("{\n");
                var keys = map.Keys.OrderBy(k => k, StringComparer.Ordinal).ToList();
                for (int i = 0; i < keys.Count; i++)
                {
                    Indent(text, depth + 1);
                    WriteString(text, keys[i]);
                    text.Append(": ");
                    Write(text, map[keys[i]], depth + 1);
                    text.Append(i + 1 < keys.Count ? ",\n" : "\n");
                }
                Indent(text, depth);
                text.Append('}');
                break;
            case System.Collections.IEnumerable list:
                var items = list.Cast<object?>().ToList();
                if (items.Count == 0)
                {
                    text.Append("[]");
                    break;
                }
                text.Append("[\n");
                for (int i = 0; i < items.Count; i++)
                {
                    Indent(text, depth + 1);
                    Write(text, items[i], depth + 1);
                    text.Append(i + 1 < items.Count ? ",\n" : "\n");
                }
                Indent(text, depth);
                text.Append(']');
                break;
            default:
                throw new ArgumentException($"no JSON form for {value.GetType()}");
        }
    }

    /// <summary>Python's <c>repr(float)</c> for the values configs hold: shortest round-trip digits, <c>.0</c> on integers, <c>e-05</c> exponents.</summary>
    public static string PythonFloat(double value)
    {
        string shortest = value.ToString("R", CultureInfo.InvariantCulture);
        int exponentAt = shortest.IndexOf('E');
        if (exponentAt >= 0)
        {
            string mantissa = shortest[..exponentAt];
            int exponent = int.Parse(shortest[(exponentAt + 1)..], CultureInfo.InvariantCulture);
            return $"{mantissa}e{(exponent < 0 ? "-" : "+")}{Math.Abs(exponent):00}";
        }
        return shortest.Contains('.') ? shortest : shortest + ".0";
    }

    private static void WriteString(StringBuilder text, string value)
    {
        text.Append('"');
        foreach (char c in value)
        {
            switch (c)
            {
                case '"': text.Append("\\\""); break;
                case '\\': text.Append("\\\\"); break;
                case '\n': text.Append("\\n"); break;
                case '\r': text.Append("\\r"); break;
                case '\t': text.Append("\\t"); break;
                default:
                    if (c < 0x20 || c > 0x7E)
                        text.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else
                        text.Append(c);
                    break;
            }
        }
        text.Append('"');
    }

    private static void Indent(StringBuilder text, int depth) => text.Append(' ', depth * 2);
}
