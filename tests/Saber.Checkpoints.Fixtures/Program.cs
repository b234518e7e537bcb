// saber-fixture: writes fixture checkpoints from the command line (the import benchmark's full-size ones included).
using System.Diagnostics;
using System.Globalization;
using Saber.Checkpoints.Fixtures;

const string Usage = """
    usage: saber-fixture write --family llada|dream --out DIR [options]

      --preset tiny|llada-8b|dream-7b   sizes and token ids (default tiny); the full-size presets stream
                                        ~16 GB of pseudo-random BF16 in chunks
      --dtype f32|bf16|f16              element type (default: the preset's; tiny f32)
      --shards N                        1 = model.safetensors; N > 1 = N shards + model.safetensors.index.json
      --seed N                          weight seed (default 22)
      --fill gaussian|fast              seeded normal draws, or fast bit patterns (default: the preset's)
      --tied                            tie the output head to the embedding
      --bias                            LLaDA include_bias (every linear layer has a bias)
      --qkv-bias                        LLaDA include_qkv_bias
      --layers N  --hidden N  --heads N  --kv-heads N  --intermediate N  --max-positions N
      --generation-config | --no-generation-config
      --no-tokenizer                    skip the tokenizer files
    """;

try
{
    return Run(args);
}
catch (UsageException error)
{
    Console.Error.WriteLine($"saber-fixture: {error.Message}");
    Console.Error.WriteLine(Usage);
    return 2;
}
catch (ArgumentException error)
{
    Console.Error.WriteLine($"saber-fixture: {error.Message}");
    return 2;
}

static int Run(string[] args)
{
    if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
    {
        Console.WriteLine(Usage);
        return args.Length == 0 ? 2 : 0;
    }
    if (args[0] != "write")
        throw new UsageException($"unknown command '{args[0]}'");

    var values = new Dictionary<string, string>(StringComparer.Ordinal);
    var flags = new HashSet<string>(StringComparer.Ordinal);
    string[] valued = ["--family", "--preset", "--dtype", "--shards", "--seed", "--fill", "--out", "--layers", "--hidden", "--heads", "--kv-heads", "--intermediate", "--max-positions"];
    string[] switches = ["--tied", "--bias", "--qkv-bias", "--generation-config", "--no-generation-config", "--no-tokenizer"];
    for (int i = 1; i < args.Length; i++)
    {
        string name = args[i];
        if (switches.Contains(name))
            flags.Add(name);
        else if (valued.Contains(name))
        {
            if (i + 1 >= args.Length || args[i + 1].StartsWith("--", StringComparison.Ordinal))
                throw new UsageException($"{name} needs a value");
            values[name] = args[++i];
        }
        else
            throw new UsageException($"unknown option '{name}'");
    }

    if (!values.TryGetValue("--family", out string? familyText))
        throw new UsageException("--family is required");
    if (!values.TryGetValue("--out", out string? directory))
        throw new UsageException("--out is required");
    Family family = familyText.ToLowerInvariant() switch
    {
        "llada" => Family.LLaDA,
        "dream" => Family.Dream,
        _ => throw new UsageException($"unknown family '{familyText}' (llada or dream)"),
    };

    FixtureOptions options = FixtureOptions.Preset(values.GetValueOrDefault("--preset", "tiny"), family);
    int Number(string name, int fallback)
    {
        if (!values.TryGetValue(name, out string? text))
            return fallback;
        if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int number) || number < 1)
            throw new UsageException($"{name} takes a positive integer, not '{text}'");
        return number;
    }

    options = options with
    {
        Shards = Number("--shards", options.Shards),
        Layers = Number("--layers", options.Layers),
        HiddenSize = Number("--hidden", options.HiddenSize),
        Heads = Number("--heads", options.Heads),
        KvHeads = values.ContainsKey("--kv-heads") ? Number("--kv-heads", 1) : options.KvHeads,
        IntermediateSize = values.ContainsKey("--intermediate") ? Number("--intermediate", 1) : options.IntermediateSize,
        MaxPositions = Number("--max-positions", options.MaxPositions),
        TiedEmbeddings = options.TiedEmbeddings || flags.Contains("--tied"),
        IncludeBias = options.IncludeBias || flags.Contains("--bias"),
        QkvBias = options.QkvBias || flags.Contains("--qkv-bias"),
        Tokenizer = !flags.Contains("--no-tokenizer"),
        GenerationConfig = flags.Contains("--generation-config") ? true : flags.Contains("--no-generation-config") ? false : options.GenerationConfig,
    };
    if (values.TryGetValue("--seed", out string? seedText))
    {
        if (!ulong.TryParse(seedText, NumberStyles.None, CultureInfo.InvariantCulture, out ulong seed))
            throw new UsageException($"--seed takes a non-negative integer, not '{seedText}'");
        options = options with { Seed = seed };
    }
    if (values.TryGetValue("--dtype", out string? dtypeText))
    {
        options = options with
        {
            DType = dtypeText.ToLowerInvariant() switch
            {
                "f32" or "float32" => FixtureDType.F32,
                "bf16" or "bfloat16" => FixtureDType.BF16,
                "f16" or "float16" => FixtureDType.F16,
                _ => throw new UsageException($"unknown dtype '{dtypeText}' (f32, bf16 or f16)"),
            },
        };
    }
    if (values.TryGetValue("--fill", out string? fillText))
    {
        options = options with
        {
            Fill = fillText.ToLowerInvariant() switch
            {
                "gaussian" => WeightFill.Gaussian,
                "fast" => WeightFill.FastPattern,
                _ => throw new UsageException($"unknown fill '{fillText}' (gaussian or fast)"),
            },
        };
    }

    var clock = Stopwatch.StartNew();
    IReadOnlyList<string> files = CheckpointFixture.Write(directory, options);
    long bytes = files.Sum(f => new FileInfo(Path.Combine(directory, f)).Length);
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"wrote {files.Count} files, {bytes / 1e9:F3} GB, to {directory} in {clock.Elapsed.TotalSeconds:F1} s: {string.Join(", ", files)}"));
    return 0;
}

/// <summary>A command line the tool cannot read: the message, then the usage.</summary>
internal sealed class UsageException(string message) : Exception(message);
