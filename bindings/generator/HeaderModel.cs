using System.Text.Json;

namespace Saber.Bindings.Generator;

/// <summary>The ABI as clang sees it: constants, enums, structs and functions, in declaration order.</summary>
internal sealed record HeaderModel(
    IReadOnlyList<Constant> Constants,
    IReadOnlyList<EnumModel> Enums,
    IReadOnlyList<StructModel> Structs,
    IReadOnlyList<FunctionModel> Functions,
    IReadOnlyDictionary<string, string> Typedefs,
    IReadOnlySet<string> OpaqueStructs);

internal sealed record Constant(string Name, long Value);
internal sealed record EnumModel(string Name, string Doc, IReadOnlyList<(string Name, long Value, string Doc)> Values);
internal sealed record FieldModel(string Name, string CType, string Doc);
internal sealed record StructModel(string Name, string Doc, IReadOnlyList<FieldModel> Fields);
internal sealed record ParameterModel(string Name, string CType);
internal sealed record FunctionModel(string Name, string ReturnCType, IReadOnlyList<ParameterModel> Parameters, string Doc);

/// <summary>Reads clang's JSON AST (<c>-Xclang -ast-dump=json</c>) and its macro dump (<c>-dM -E</c>).</summary>
internal static class HeaderReader
{
    /// <param name="prefix">Only declarations whose names start with it (case-insensitive) belong to the ABI.</param>
    public static HeaderModel Read(string astJson, string macros, string prefix)
    {
        using JsonDocument document = JsonDocument.Parse(astJson, new JsonDocumentOptions { MaxDepth = 4096 });
        var enums = new List<EnumModel>();
        var structs = new List<StructModel>();
        var functions = new List<FunctionModel>();
        var typedefs = new Dictionary<string, string>(StringComparer.Ordinal);
        var opaque = new HashSet<string>(StringComparer.Ordinal);
        bool Ours(string? name) => name is not null && name.StartsWith(prefix, StringComparison.OrdinalIgnoreCase);

        foreach (JsonElement node in document.RootElement.GetProperty("inner").EnumerateArray())
        {
            string kind = node.GetProperty("kind").GetString()!;
            string? name = node.TryGetProperty("name", out JsonElement n) ? n.GetString() : null;
            if (node.TryGetProperty("isImplicit", out JsonElement implicitFlag) && implicitFlag.GetBoolean()) continue;
            switch (kind)
            {
                case "TypedefDecl" when name is not null:
                    typedefs[name] = QualType(node);
                    break;
                case "EnumDecl" when Ours(name):
                    long next = 0;
                    var values = new List<(string, long, string)>();
                    foreach (JsonElement child in Children(node, "EnumConstantDecl"))
                    {
                        long value = ConstantValue(child) ?? next;
                        values.Add((child.GetProperty("name").GetString()!, value, Doc(child)));
                        next = value + 1;
                    }
                    enums.Add(new EnumModel(name!, Doc(node), values));
                    break;
                case "RecordDecl" when Ours(name):
                    if (node.TryGetProperty("completeDefinition", out JsonElement complete) && complete.GetBoolean())
                        structs.Add(new StructModel(name!, Doc(node),
                            Children(node, "FieldDecl").Select(f => new FieldModel(f.GetProperty("name").GetString()!, QualType(f), Doc(f))).ToList()));
                    else
                        opaque.Add(name!);
                    break;
                case "FunctionDecl" when Ours(name):
                    string signature = QualType(node);
                    functions.Add(new FunctionModel(name!, signature[..signature.IndexOf('(')].Trim(),
                        Children(node, "ParmVarDecl").Select(p => new ParameterModel(p.GetProperty("name").GetString()!, QualType(p))).ToList(),
                        Doc(node)));
                    break;
            }
        }
        // Opaque structs that were completed later are not opaque.
        opaque.ExceptWith(structs.Select(s => s.Name));

        var constants = new List<Constant>();
        foreach (string line in macros.Split('\n'))
        {
            string[] parts = line.Trim().Split(' ', 3);
            if (parts.Length == 3 && parts[0] == "#define" && Ours(parts[1]) && long.TryParse(parts[2], out long value))
                constants.Add(new Constant(parts[1], value));
        }
        constants.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
        return new HeaderModel(constants, enums, structs, functions, typedefs, opaque);
    }

    private static IEnumerable<JsonElement> Children(JsonElement node, string kind) =>
        node.TryGetProperty("inner", out JsonElement inner)
            ? inner.EnumerateArray().Where(c => c.GetProperty("kind").GetString() == kind)
            : [];

    private static string QualType(JsonElement node) => node.GetProperty("type").GetProperty("qualType").GetString()!;

    private static long? ConstantValue(JsonElement enumConstant)
    {
        foreach (JsonElement child in Children(enumConstant, "ConstantExpr"))
            if (child.TryGetProperty("value", out JsonElement value) && long.TryParse(value.GetString(), out long v))
                return v;
        return null;
    }

    /// <summary>The text of a declaration's doc comment (its FullComment), whitespace-normalised.</summary>
    private static string Doc(JsonElement node)
    {
        var texts = new List<string>();
        void Collect(JsonElement e)
        {
            if (e.TryGetProperty("text", out JsonElement t)) texts.Add(t.GetString()!);
            if (e.TryGetProperty("inner", out JsonElement inner))
                foreach (JsonElement c in inner.EnumerateArray()) Collect(c);
        }
        foreach (JsonElement comment in Children(node, "FullComment")) Collect(comment);
        return string.Join(' ', string.Join(' ', texts).Split((char[])[' ', '\t', '\n', '\r'], StringSplitOptions.RemoveEmptyEntries));
    }
}
