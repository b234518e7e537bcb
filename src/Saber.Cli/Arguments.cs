using System.Globalization;

namespace Saber.Cli;

/// <summary>A usage error: printed with the command's usage and exit code 2.</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary><c>--name value</c> options and <c>--flag</c> switches, each read at most once and all checked for leftovers.</summary>
internal sealed class Arguments
{
    private readonly Dictionary<string, string?> values = new(StringComparer.Ordinal);
    private readonly HashSet<string> read = new(StringComparer.Ordinal);
    private readonly HashSet<string> flags;
    private readonly List<string> positionals = [];
    private bool positionalsRead;

    /// <summary>The arguments that are not options, in order (a command that takes none rejects them).</summary>
    public IReadOnlyList<string> Positionals
    {
        get
        {
            positionalsRead = true;
            return positionals;
        }
    }

    /// <param name="acceptsPositionals">The command takes arguments that are not options (prompts); otherwise one is a usage error at once.</param>
    public Arguments(IEnumerable<string> args, IReadOnlySet<string> flags, bool acceptsPositionals = false)
    {
        this.flags = new HashSet<string>(flags, StringComparer.Ordinal);
        using var e = args.GetEnumerator();
        bool optionsEnded = false;
        while (e.MoveNext())
        {
            string name = e.Current;
            if (name == "--" && !optionsEnded)
            {
                optionsEnded = true;   // everything after "--" is an argument, even "--x"
                continue;
            }
            if (optionsEnded || !name.StartsWith("--", StringComparison.Ordinal))
            {
                if (!acceptsPositionals) throw new UsageException($"Unexpected argument '{name}'.");
                positionals.Add(name);
                continue;
            }
            if (values.ContainsKey(name))
                throw new UsageException($"Option {name} is given twice.");
            if (flags.Contains(name))
            {
                values[name] = null;
                continue;
            }
            // A missing value is reported when the option is read, so that an unknown option
            // at the end of the line is reported as unknown.
            values[name] = e.MoveNext() ? e.Current : null;
        }
    }

    public bool Flag(string name)
    {
        read.Add(name);
        return values.ContainsKey(name);
    }

    public string? Text(string name)
    {
        read.Add(name);
        if (values.TryGetValue(name, out string? value) && value is null && !flags.Contains(name))
            throw new UsageException($"Option {name} needs a value.");
        return value;
    }

    public string RequiredText(string name) => Text(name) ?? throw new UsageException($"Option {name} is required.");

    public int? Int(string name) => Text(name) is { } s ? ParseInt(name, s) : null;

    public int RequiredInt(string name) => ParseInt(name, RequiredText(name));

    public ulong? ULong(string name) => Text(name) is { } s
        ? ulong.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out ulong v) ? v
            : throw new UsageException($"{name} expects an integer in [0, {ulong.MaxValue}]; got '{s}'.")
        : null;

    public long? Long(string name) => Text(name) is { } s
        ? long.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long v) ? v
            : throw new UsageException($"{name} expects an integer in [{long.MinValue}, {long.MaxValue}]; got '{s}'.")
        : null;

    public float? Float(string name) => Text(name) is { } s
        ? float.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out float v) ? v : throw new UsageException($"{name} expects a number; got '{s}'.")
        : null;

    public T? Choice<T>(string name, IReadOnlyDictionary<string, T> choices) where T : struct =>
        Text(name) is { } s
            ? choices.TryGetValue(s, out T v) ? v : throw new UsageException($"{name} expects one of {string.Join(", ", choices.Keys)}; got '{s}'.")
            : null;

    public int[] IntList(string name)
    {
        string s = RequiredText(name);
        return s.Length == 0 ? [] : s.Split(',').Select(p => ParseInt(name, p.Trim())).ToArray();
    }

    /// <summary>Throws for any option that no command read.</summary>
    public void RejectUnknown()
    {
        string? unknown = values.Keys.FirstOrDefault(k => !read.Contains(k));
        if (unknown is not null)
            throw new UsageException($"Unknown option {unknown}.");
        if (!positionalsRead && positionals.Count > 0)
            throw new UsageException($"Unexpected argument '{positionals[0]}'.");   // accepted but never read: a command's bug
    }

    private static int ParseInt(string name, string s) =>
        int.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int v) ? v
        : System.Numerics.BigInteger.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out _)
            ? throw new UsageException($"{name} expects an integer in [{int.MinValue}, {int.MaxValue}]; got '{s}'.")
            : throw new UsageException($"{name} expects an integer; got '{s}'.");
}
