using BenchmarkDotNet.Attributes;

namespace Saber.Benchmarks;

/// <summary>
/// Issue 12's before/after: the CPU row pass over one step's rows at LLaDA's shape (256 positions × V = 126464), with
/// the previous arithmetic (<see cref="PreviousRowConfidence"/>: Vector256.Exp, float partial sums, double Gumbel logs)
/// against the exact arithmetic (<see cref="RowConfidenceKernel"/>), side by side in one run. The row pass is the
/// whole step but for the decide rule over 256 positions, which is unchanged.
/// </summary>
[MemoryDiagnoser]
public class RowPassBenchmark
{
    private const int MaskId = 126336;

    private SequenceLogits logits;

    [Params(LogitsElementType.Float32, LogitsElementType.BFloat16)]
    public LogitsElementType ElementType { get; set; }

    /// <summary>Saber's step (maxprob, T = 0), the negentropy metric, and Gumbel-max sampling at T = 0.7.</summary>
    [Params("maxprob T=0", "negentropy T=0", "maxprob T=0.7")]
    public string Case { get; set; } = "";

    private ConfidenceMetric Metric => Case.StartsWith("negentropy", StringComparison.Ordinal) ? ConfidenceMetric.NegEntropy : ConfidenceMetric.MaxProb;
    private float Temperature => Case.EndsWith("0.7", StringComparison.Ordinal) ? 0.7f : 0f;

    [GlobalSetup]
    public void Setup() => logits = CpuStepBenchmark.RandomLogits(ElementType);

    [Benchmark(Baseline = true, Description = "previous row pass (1 thread)")]
    public long Previous()
    {
        long sum = 0;
        for (int row = 0; row < CpuStepBenchmark.Positions; row++)
            sum += PreviousRowConfidence.Compute(logits, row, MaskId, -1, Metric, Temperature, 7, new RowCoordinates(1, 0, row)).Prediction;
        return sum;
    }

    [Benchmark(Description = "exact row pass (1 thread)")]
    public long Exact()
    {
        long sum = 0;
        for (int row = 0; row < CpuStepBenchmark.Positions; row++)
            sum += RowConfidenceKernel.Compute(logits, row, MaskId, -1, Metric, Temperature, 7, new RowCoordinates(1, 0, row)).Prediction;
        return sum;
    }
}
