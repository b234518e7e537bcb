using BenchmarkDotNet.Attributes;

namespace Saber.Benchmarks;

/// <summary>
/// One Saber step of the CPU sampler at LLaDA's shape (256 generation positions, V = 126464), against
/// a naive step that materialises the softmax of every row before taking its maximum. Logits read per
/// step: 256 · V · element size; the GB/s column divides that by the mean time.
/// </summary>
[MemoryDiagnoser]
public class CpuStepBenchmark
{
    public const int Positions = 256;
    public const int Vocabulary = 126464;
    private const int MaskId = 126336; // LLaDA's [MASK]

    private static readonly DecodeOptions Options = new() { GenerationLength = Positions, Strategy = new SaberStrategy() };

    private IReadOnlyList<SequenceLogits> logits = [];

    [Params(LogitsElementType.Float32, LogitsElementType.BFloat16)]
    public LogitsElementType ElementType { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        logits = [RandomLogits(ElementType)];
    }

    /// <summary>One step's logits, [Positions, Vocabulary], uniform in [−8, 8) from a fixed seed.</summary>
    public static SequenceLogits RandomLogits(LogitsElementType type)
    {
        var rng = new Random(1);
        var values = new float[Positions * Vocabulary];
        for (int i = 0; i < values.Length; i++)
            values[i] = (float)(rng.NextDouble() * 16 - 8);
        return type == LogitsElementType.Float32
            ? SequenceLogits.FromFloat32(values, Positions, Vocabulary)
            : SequenceLogits.FromBFloat16(values.Select(BFloat16Bits.FromSingle).ToArray(), Positions, Vocabulary);
    }

    [Benchmark(Baseline = true, Description = "naive (materialised softmax, 1 thread)")]
    public int Naive() => NaiveSaberStep.FirstStep(logits[0], MaskId, ((SaberStrategy)Options.Strategy).MinTokensPerStep);

    [Benchmark(Description = "saber step (1 thread)")]
    public int OneThread() => Step(1);

    [Benchmark(Description = "saber step (all cores)")]
    public int AllCores() => Step(-1);

    private int Step(int threads)
    {
        // A fresh decode state each time (256-entry arrays), so every call is a first step on the same logits.
        var batch = DecodeBatch.Create([ReadOnlyMemory<int>.Empty], Options, Vocabulary, MaskId, threads);
        return batch.Apply(logits, snapshots: false)[0].Trace.Committed.Count;
    }
}

/// <summary>
/// The way a first implementation would write the step: softmax of each row into a buffer the size of
/// the vocabulary (max pass, exp pass, sum, divide), then argmax of the probabilities, then the draft.
/// </summary>
internal static class NaiveSaberStep
{
    public static int FirstStep(in SequenceLogits logits, int maskId, int minTokens)
    {
        int rows = logits.Rows, vocabulary = logits.Vocabulary;
        var probabilities = new float[vocabulary];   // one row's softmax, materialised
        var widened = new float[vocabulary];         // bf16 rows converted to float32 first (like .float())
        var confidence = new float[rows];
        for (int i = 0; i < rows; i++)
        {
            ReadOnlySpan<float> row = logits.ElementType == LogitsElementType.Float32 ? logits.Float32Row(i) : Widen(logits.BFloat16Row(i), widened);
            float max = float.NegativeInfinity;
            for (int v = 0; v < vocabulary; v++) max = Math.Max(max, row[v]);
            double sum = 0;
            for (int v = 0; v < vocabulary; v++)
            {
                probabilities[v] = MathF.Exp(row[v] - max);
                sum += probabilities[v];
            }
            for (int v = 0; v < vocabulary; v++) probabilities[v] = (float)(probabilities[v] / sum);
            int best = -1;
            for (int v = 0; v < vocabulary; v++)
                if (v != maskId && (best < 0 || probabilities[v] > probabilities[best])) best = v;
            confidence[i] = probabilities[best];
        }
        // First step: τ = 1, so the draft is the top n by confidence.
        return Enumerable.Range(0, rows).OrderByDescending(i => confidence[i]).ThenBy(i => i).Take(minTokens).Count();
    }

    private static float[] Widen(ReadOnlySpan<ushort> bits, float[] destination)
    {
        for (int v = 0; v < bits.Length; v++) destination[v] = BFloat16Bits.ToSingle(bits[v]);
        return destination;
    }
}
