namespace Saber.Cli;

/// <summary>The strategy options shared by the commands that decode.</summary>
internal static class StrategyArguments
{
    public const string Usage =
        "  --strategy saber|low-confidence|threshold|factor   (default saber)\n" +
        "  saber:          [--variant reference|paper] [--min-tokens n] [--remask-divisor mu]\n" +
        "                  [--no-backtracking] [--fixed-threshold theta]\n" +
        "  low-confidence: --steps S [--metric maxprob|margin|negentropy|random]\n" +
        "  threshold:      [--threshold theta]   (default 0.9)\n" +
        "  factor:         [--factor F]   (default 1)\n" +
        "  [--temperature T --seed N]";

    public const string CacheUsage =
        "  --cache none|prefix|dual   reuse keys and values between model calls (default none: the exact decode);\n" +
        "                     prefix and dual need a model with a cache graph (model.cache.onnx) and are approximate\n" +
        "  [--cache-refresh-every R]  with a cache: also a full pass every R calls (default: only when a block completes)\n" +
        "  [--cache-on-remask positions|block]  with a cache: recompute a re-masked position alone (default) or its block";

    public static readonly string[] Flags = ["--no-backtracking"];

    private static readonly Dictionary<string, SaberVariant> Variants = new() { ["reference"] = SaberVariant.Reference, ["paper"] = SaberVariant.Paper };

    private static readonly Dictionary<string, ConfidenceMetric> Metrics = new()
    {
        ["maxprob"] = ConfidenceMetric.MaxProb,
        ["margin"] = ConfidenceMetric.Margin,
        ["negentropy"] = ConfidenceMetric.NegEntropy,
        ["random"] = ConfidenceMetric.Random,
    };

    /// <summary>Reads the strategy options; rejects options that belong to another strategy.</summary>
    public static DecodingStrategy Read(Arguments args)
    {
        string strategy = args.Text("--strategy") ?? "saber";
        string[] saberOnly = ["--variant", "--min-tokens", "--remask-divisor", "--no-backtracking", "--fixed-threshold"];
        string[] lowConfidenceOnly = ["--steps", "--metric"];
        string[] thresholdOnly = ["--threshold"];
        string[] factorOnly = ["--factor"];
        void Forbid(IEnumerable<string> names)
        {
            foreach (string name in names)
                if (args.Flag(name))
                    throw new UsageException($"{name} does not apply to --strategy {strategy}.");
        }

        switch (strategy)
        {
            case "saber":
                Forbid(lowConfidenceOnly.Concat(thresholdOnly).Concat(factorOnly));
                var defaults = new SaberStrategy();
                return new SaberStrategy(
                    args.Choice("--variant", Variants) ?? defaults.Variant,
                    args.Int("--min-tokens") ?? defaults.MinTokensPerStep,
                    args.Int("--remask-divisor") ?? defaults.RemaskDivisor,
                    !args.Flag("--no-backtracking"),
                    args.Float("--fixed-threshold"));
            case "low-confidence":
                Forbid(saberOnly.Concat(thresholdOnly).Concat(factorOnly));
                return new LowConfidenceStrategy(args.RequiredInt("--steps"), args.Choice("--metric", Metrics) ?? ConfidenceMetric.MaxProb);
            case "threshold":
                Forbid(saberOnly.Concat(lowConfidenceOnly).Concat(factorOnly));
                return new ThresholdStrategy(args.Float("--threshold") ?? 0.9f);
            case "factor":
                Forbid(saberOnly.Concat(lowConfidenceOnly).Concat(thresholdOnly));
                return new FactorStrategy(args.Float("--factor") ?? new FactorStrategy().Factor);
            default:
                throw new UsageException($"--strategy expects saber, low-confidence, threshold or factor; got '{strategy}'.");
        }
    }

    /// <summary>
    /// <c>--cache</c> (default none), <c>--cache-refresh-every</c> and <c>--cache-on-remask</c>; the last two only with a cache
    /// (with none they would silently do nothing).
    /// </summary>
    public static CacheOptions Cache(Arguments args)
    {
        CachePolicy policy = args.Choice("--cache", CacheOptions.PolicyNames) ?? CachePolicy.None;
        int? refreshEvery = args.Int("--cache-refresh-every");
        RemaskRefresh? onRemask = args.Choice("--cache-on-remask", CacheOptions.OnRemaskNames);
        if (policy == CachePolicy.None)
        {
            if (refreshEvery is not null) throw new UsageException("--cache-refresh-every does not apply to --cache none.");
            if (onRemask is not null) throw new UsageException("--cache-on-remask does not apply to --cache none.");
            return CacheOptions.None;
        }
        if (refreshEvery is < 1) throw new UsageException($"--cache-refresh-every must be >= 1; got {refreshEvery}.");
        return new CacheOptions(policy, refreshEvery, onRemask ?? RemaskRefresh.Positions);
    }

    /// <summary>The cache settings for tables: the policy, with R and the re-mask rule when a cache runs.</summary>
    public static string DescribeCache(CacheOptions cache) => !cache.Enabled ? "cache none"
        : $"cache {CacheOptions.Name(cache.Policy)}{(cache.RefreshEvery is int r ? $" (refresh every {r})" : "")}" +
          $"{(cache.OnRemask == RemaskRefresh.Block ? ", re-masks refresh their block" : "")}";

    /// <summary>FLOPs for humans (<c>1.23e9</c>), or <c>-</c> when the model does not report them.</summary>
    public static string Flops(double? flops) =>
        flops is double f ? f.ToString("0.00e0", System.Globalization.CultureInfo.InvariantCulture) : "-";

    /// <summary><c>--temperature</c> (default 0) and <c>--seed</c> (null when not given).</summary>
    public static (float Temperature, ulong? Seed) Sampling(Arguments args) => (args.Float("--temperature") ?? 0f, args.ULong("--seed"));

    /// <summary>
    /// After validation: the seed keys the Gumbel draws (T &gt; 0) and the random metric; warns on
    /// <paramref name="stderr"/> when one of seed and randomness is given without the other.
    /// </summary>
    public static void WarnAboutSeed(DecodeOptions options, bool seedGiven, string command, TextWriter stderr)
    {
        bool temperature = options.Temperature > 0f;
        bool random = temperature || options.Strategy is LowConfidenceStrategy { Metric: ConfidenceMetric.Random };
        if (random && !seedGiven)
            stderr.WriteLine($"saber {command}: warning: {(temperature ? "--temperature without --seed" : "--metric random without --seed")}: " +
                "the random draws use seed 0 (give --seed N to choose another)");
        if (!random && seedGiven)
            stderr.WriteLine($"saber {command}: warning: --seed has no effect without --temperature > 0 or --metric random");
    }

    /// <summary>A short name for tables.</summary>
    public static string Describe(DecodingStrategy strategy) => strategy switch
    {
        SaberStrategy s => $"saber ({s.Variant.ToString().ToLowerInvariant()}{(s.Backtracking ? "" : ", no backtracking")}{(s.FixedThreshold is float t ? $", fixed threshold {t}" : "")})",
        LowConfidenceStrategy lc => $"low-confidence (S={lc.Steps}, {lc.Metric.ToString().ToLowerInvariant()})",
        ThresholdStrategy th => $"threshold {th.Threshold}",
        FactorStrategy f => $"factor {f.Factor}",
        _ => strategy.ToString(),
    };
}
