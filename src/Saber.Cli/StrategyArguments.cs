namespace Saber.Cli;

/// <summary>The strategy options shared by the commands that decode.</summary>
internal static class StrategyArguments
{
    public const string Usage =
        "  --strategy saber|low-confidence|threshold   (default saber)\n" +
        "  saber:          [--variant reference|paper] [--min-tokens n] [--remask-divisor mu]\n" +
        "                  [--no-backtracking] [--fixed-threshold theta]\n" +
        "  low-confidence: --steps S [--metric maxprob|margin|negentropy|random]\n" +
        "  threshold:      [--threshold theta]   (default 0.9)\n" +
        "  [--temperature T --seed N]";

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
        void Forbid(IEnumerable<string> names)
        {
            foreach (string name in names)
                if (args.Flag(name))
                    throw new UsageException($"{name} does not apply to --strategy {strategy}.");
        }

        switch (strategy)
        {
            case "saber":
                Forbid(lowConfidenceOnly.Concat(thresholdOnly));
                var defaults = new SaberStrategy();
                return new SaberStrategy(
                    args.Choice("--variant", Variants) ?? defaults.Variant,
                    args.Int("--min-tokens") ?? defaults.MinTokensPerStep,
                    args.Int("--remask-divisor") ?? defaults.RemaskDivisor,
                    !args.Flag("--no-backtracking"),
                    args.Float("--fixed-threshold"));
            case "low-confidence":
                Forbid(saberOnly.Concat(thresholdOnly));
                return new LowConfidenceStrategy(args.RequiredInt("--steps"), args.Choice("--metric", Metrics) ?? ConfidenceMetric.MaxProb);
            case "threshold":
                Forbid(saberOnly.Concat(lowConfidenceOnly));
                return new ThresholdStrategy(args.Float("--threshold") ?? 0.9f);
            default:
                throw new UsageException($"--strategy expects saber, low-confidence or threshold; got '{strategy}'.");
        }
    }

    /// <summary>A short name for tables.</summary>
    public static string Describe(DecodingStrategy strategy) => strategy switch
    {
        SaberStrategy s => $"saber ({s.Variant.ToString().ToLowerInvariant()}{(s.Backtracking ? "" : ", no backtracking")}{(s.FixedThreshold is float t ? $", fixed threshold {t}" : "")})",
        LowConfidenceStrategy lc => $"low-confidence (S={lc.Steps}, {lc.Metric.ToString().ToLowerInvariant()})",
        ThresholdStrategy th => $"threshold {th.Threshold}",
        _ => strategy.ToString(),
    };
}
