using Saber.Onnx;

namespace Saber.Service.Tests;

/// <summary>
/// The shipped model (models/tiny) behind the engine: 32 concurrent requests on one <see cref="OnnxDenoiser"/>, each
/// bit-identical to decoding its prompt alone. Before the engine, sharing one OnnxDenoiser this way either threw
/// ("runs one forward pass at a time") or, with a lock around ForwardAsync, read logits another pass had overwritten.
/// </summary>
public class OnnxEngineTests
{
    private static string TinyDirectory => Path.Combine(AppContext.BaseDirectory, "models", "tiny");

    private static readonly string[] Prompts =
        ["def fibonacci(n):\n", "def is_prime(n):\n", "class Stack:\n\tdef push(self, item):\n", "def read_lines(path):\n",
         "import os\n\n\ndef main():\n", "\tfor i in range(10):\n", "x = ", "return "];

    private static DecodeOptions OptionsFor(int i) => new()
    {
        GenerationLength = 16 + 8 * (i % 3),
        BlockLength = 8,
        Strategy = (i % 5) switch
        {
            0 => new SaberStrategy(),
            1 => new SaberStrategy(SaberVariant.Paper),
            2 => new LowConfidenceStrategy(16 + 8 * (i % 3), ConfidenceMetric.Margin),
            3 => new ThresholdStrategy(0.7f),
            _ => new FactorStrategy(2f),
        },
        Temperature = i % 2 == 0 ? 0f : 0.9f,
        Seed = (ulong)(1000 + i),
        Trace = true,
    };

    [TestCase(false)]
    [TestCase(true)]
    public async Task ThirtyTwoConcurrentRequestsOnOneModelMatchTheirLoneDecode(bool groupByLength)
    {
        var tokenizer = CharacterTokenizer.Load(Path.Combine(TinyDirectory, "tokenizer.json"));
        string model = Path.Combine(TinyDirectory, "model.onnx");
        var options = new OnnxEngineOptions { IntraOpThreads = 1 };
        using OnnxDenoiser shared = OnnxDenoiser.Load(model, options);
        using OnnxDenoiser alone = OnnxDenoiser.Load(model, options);
        var gate = new GatedDenoiser(shared);
        gate.Open();
        await using var engine = new SaberEngine(gate, new SaberEngineOptions { MaxBatchSize = 12, GroupByCanvasLength = groupByLength });

        const int count = 32;
        int[][] prompts = Enumerable.Range(0, count).Select(i => tokenizer.Encode(Prompts[i % Prompts.Length] + new string('\t', i / Prompts.Length))).ToArray();
        using var start = new Barrier(count);
        Task<SequenceResult>[] tasks = Enumerable.Range(0, count).Select(i => Task.Factory.StartNew(() =>
        {
            start.SignalAndWait();
            return engine.DecodeAsync(prompts[i], OptionsFor(i));
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap()).ToArray();
        SequenceResult[] results = await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromMinutes(3));

        Assert.That(gate.Overlapped, Is.False, "one forward pass at a time");
        Assert.That(gate.Calls.Max(c => c.Canvases.Count), Is.GreaterThan(1), "requests shared forward passes");
        var sampler = new CpuSampler();
        for (int i = 0; i < count; i++)
        {
            DecodeResult reference = await sampler.DecodeAsync(alone, [prompts[i]], OptionsFor(i));
            Same.Result(reference.Sequences[0], results[i], $"request {i} ({OptionsFor(i).Strategy}, T={OptionsFor(i).Temperature})");
        }
    }
}
