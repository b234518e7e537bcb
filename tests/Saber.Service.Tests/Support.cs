using System.Text;
using System.Threading.Channels;
using Saber.Denoisers;

namespace Saber.Service.Tests;

/// <summary>
/// Wraps a denoiser so that the test decides when each forward pass runs: a call announces itself
/// (<see cref="NextCallAsync"/>) and waits for <see cref="Release"/>. <see cref="Open"/> stops gating.
/// </summary>
internal sealed class GatedDenoiser(IDenoiser inner) : IDenoiser
{
    private readonly Channel<DenoiseRequest> arrivals = Channel.CreateUnbounded<DenoiseRequest>();
    private readonly SemaphoreSlim releases = new(0);
    private volatile bool open;
    private int inFlight;

    public int VocabularySize => inner.VocabularySize;
    public int MaskId => inner.MaskId;
    public int? MaxSequenceLength => inner.MaxSequenceLength;

    /// <summary>Every call, in order.</summary>
    public List<DenoiseRequest> Calls { get; } = [];

    /// <summary>Set when two calls overlapped (the engine must never do that).</summary>
    public bool Overlapped { get; private set; }

    public async ValueTask<IReadOnlyList<SequenceLogits>> ForwardAsync(DenoiseRequest request, CancellationToken cancellationToken)
    {
        if (Interlocked.Increment(ref inFlight) != 1) Overlapped = true;
        try
        {
            lock (Calls) Calls.Add(request);
            if (!open)
            {
                arrivals.Writer.TryWrite(request);
                await releases.WaitAsync(cancellationToken);
            }
            return await inner.ForwardAsync(request, cancellationToken);
        }
        finally
        {
            Interlocked.Decrement(ref inFlight);
        }
    }

    /// <summary>The next call to arrive at the gate (fails the test after 30 s, so a bug cannot hang the run).</summary>
    public async Task<DenoiseRequest> NextCallAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        return await arrivals.Reader.ReadAsync(timeout.Token);
    }

    /// <summary>A read of the next arrival, to race against other events.</summary>
    public Task<DenoiseRequest> ArrivalAsync() => arrivals.Reader.ReadAsync().AsTask();

    public void Release() => releases.Release();

    public void Open()
    {
        open = true;
        releases.Release(1000);
    }
}

/// <summary>
/// One <see cref="SyntheticDenoiser"/> per registered prompt (a task of one sequence each): a canvas is routed to the
/// denoiser of the prompt it starts with and its logits copied out. The denoiser for prompt k, used alone by
/// <see cref="CpuSampler"/> on that prompt, gives the reference decode.
/// </summary>
internal sealed class RoutingDenoiser(int vocabulary) : IDenoiser
{
    private readonly List<(int[] Prompt, int Generation, SyntheticDenoiser Denoiser)> routes = [];

    public int VocabularySize => vocabulary;
    public int MaskId => vocabulary - 1;
    public int? MaxSequenceLength { get; init; }

    /// <summary>Canvases starting with this token get a NaN logit in their first generation row.</summary>
    public int? PoisonKey { get; set; }

    /// <summary>Adds a random synthetic task for a prompt starting with <paramref name="key"/> (unique per route).</summary>
    public (int[] Prompt, SyntheticDenoiser Denoiser) Add(int key, int seed, int promptLength, int generationLength, int traps)
    {
        var random = SyntheticTask.Random(seed, vocabulary, [promptLength], generationLength, traps);
        int[] prompt = random.Prompts[0];
        prompt[0] = key;
        var task = new SyntheticTask(vocabulary, MaskId, [prompt], random.Targets, random.Traps);
        var denoiser = new SyntheticDenoiser(task, new SyntheticDenoiserOptions(Seed: seed));
        lock (routes) routes.Add((prompt, generationLength, denoiser));
        return (prompt, denoiser);
    }

    public ValueTask<IReadOnlyList<SequenceLogits>> ForwardAsync(DenoiseRequest request, CancellationToken cancellationToken)
    {
        var result = new SequenceLogits[request.Canvases.Count];
        for (int i = 0; i < result.Length; i++)
        {
            ReadOnlyMemory<int> canvas = request.Canvases[i];
            SyntheticDenoiser denoiser;
            lock (routes)
                denoiser = routes.Single(r => r.Prompt.Length + r.Generation == canvas.Length && canvas.Span.StartsWith(r.Prompt)).Denoiser;
            SequenceLogits logits = denoiser.ForwardAsync(new DenoiseRequest(request.Step, [0], [canvas]), cancellationToken).Result[0];
            float[] copy = new float[logits.Rows * logits.Vocabulary];
            for (int row = 0; row < logits.Rows; row++)
                logits.Float32Row(row).CopyTo(copy.AsSpan(row * logits.Vocabulary));
            if (PoisonKey is int key && canvas.Span[0] == key)
                copy[(logits.Rows - 1) * logits.Vocabulary] = float.NaN;
            result[i] = SequenceLogits.FromFloat32(copy, logits.Rows, logits.Vocabulary);
        }
        return ValueTask.FromResult<IReadOnlyList<SequenceLogits>>(result);
    }
}

/// <summary>
/// Returns every call's logits in one buffer that the next call first fills with NaN: a caller that read logits after
/// the next forward pass (the bug of a lock around <see cref="IDenoiser.ForwardAsync"/>) would fail or decode wrong tokens.
/// </summary>
internal sealed class BufferReusingDenoiser(IDenoiser inner) : IDenoiser
{
    private float[] buffer = [];
    public int VocabularySize => inner.VocabularySize;
    public int MaskId => inner.MaskId;
    public int? MaxSequenceLength => inner.MaxSequenceLength;

    public async ValueTask<IReadOnlyList<SequenceLogits>> ForwardAsync(DenoiseRequest request, CancellationToken cancellationToken)
    {
        Array.Fill(buffer, float.NaN);
        IReadOnlyList<SequenceLogits> logits = await inner.ForwardAsync(request, cancellationToken);
        long total = logits.Sum(l => (long)l.Rows * l.Vocabulary);
        if (buffer.Length < total) buffer = new float[total];
        var result = new SequenceLogits[logits.Count];
        int offset = 0;
        for (int i = 0; i < logits.Count; i++)
        {
            int size = logits[i].Rows * logits[i].Vocabulary;
            for (int row = 0; row < logits[i].Rows; row++)
                logits[i].Float32Row(row).CopyTo(buffer.AsSpan(offset + row * logits[i].Vocabulary));
            result[i] = SequenceLogits.FromFloat32(buffer.AsMemory(offset, size), logits[i].Rows, logits[i].Vocabulary);
            offset += size;
        }
        return result;
    }
}

/// <summary>Throws from chosen calls (1-based call numbers), otherwise forwards.</summary>
internal sealed class FailingDenoiser(IDenoiser inner, params int[] failingCalls) : IDenoiser
{
    private int calls;
    public int VocabularySize => inner.VocabularySize;
    public int MaskId => inner.MaskId;
    public int? MaxSequenceLength => inner.MaxSequenceLength;

    public ValueTask<IReadOnlyList<SequenceLogits>> ForwardAsync(DenoiseRequest request, CancellationToken cancellationToken)
    {
        int call = Interlocked.Increment(ref calls);
        if (failingCalls.Contains(call))
            throw new InvalidOperationException($"Model failure at call {call}.");
        return inner.ForwardAsync(request, cancellationToken);
    }
}

/// <summary>A denoiser that blocks until its token is cancelled (for disposal tests).</summary>
internal sealed class HangingDenoiser(int vocabulary) : IDenoiser
{
    public int VocabularySize => vocabulary;
    public int MaskId => vocabulary - 1;
    public TaskCompletionSource Entered { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public async ValueTask<IReadOnlyList<SequenceLogits>> ForwardAsync(DenoiseRequest request, CancellationToken cancellationToken)
    {
        Entered.TrySetResult();
        await Task.Delay(Timeout.Infinite, cancellationToken);
        throw new InvalidOperationException("unreachable");
    }
}

internal static class Npy
{
    /// <summary>Writes a float32 C-order <c>.npy</c> (format 1.0).</summary>
    public static void WriteFloat32(string path, long[] shape, float[] values)
    {
        string dict = $"{{'descr': '<f4', 'fortran_order': False, 'shape': ({string.Join(", ", shape)}{(shape.Length == 1 ? "," : "")}), }}";
        int unpadded = 10 + dict.Length + 1;
        string header = dict + new string(' ', (64 - unpadded % 64) % 64) + "\n";
        using var stream = File.Create(path);
        stream.Write([0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0]);
        stream.Write(BitConverter.GetBytes((ushort)header.Length));
        stream.Write(Encoding.ASCII.GetBytes(header));
        byte[] data = new byte[values.Length * 4];
        Buffer.BlockCopy(values, 0, data, 0, data.Length);
        stream.Write(data);
    }
}

internal static class Same
{
    /// <summary>Asserts bit-identical canvases, prompt lengths, NFE, re-mask statistics and traces (every field, floats by their bits).</summary>
    public static void Result(SequenceResult expected, SequenceResult actual, string what)
    {
        Assert.That(actual.Canvas, Is.EqualTo(expected.Canvas), $"{what}: canvas");
        Assert.That(actual.PromptLength, Is.EqualTo(expected.PromptLength), $"{what}: prompt length");
        Assert.That(actual.Nfe, Is.EqualTo(expected.Nfe), $"{what}: NFE");
        Assert.That(actual.RemaskStatistics, Is.EqualTo(expected.RemaskStatistics).And.Not.Null, $"{what}: re-mask statistics");
        Assert.That(actual.Trace, Has.Count.EqualTo(expected.Trace.Count), $"{what}: trace length");
        for (int t = 0; t < expected.Trace.Count; t++)
            Step(expected.Trace[t], actual.Trace[t], $"{what}, trace step {t + 1}");
    }

    public static void Step(StepTrace e, StepTrace a, string what)
    {
        Assert.That(a.Step, Is.EqualTo(e.Step), $"{what}: step");
        Assert.That(a.Tau.HasValue, Is.EqualTo(e.Tau.HasValue), $"{what}: tau set");
        if (e.Tau is double tau)
            Assert.That(BitConverter.DoubleToInt64Bits(a.Tau!.Value), Is.EqualTo(BitConverter.DoubleToInt64Bits(tau)), $"{what}: tau bits");
        Assert.That(a.Committed.Select(c => (c.Position, c.Token, BitConverter.SingleToInt32Bits(c.Confidence))),
            Is.EqualTo(e.Committed.Select(c => (c.Position, c.Token, BitConverter.SingleToInt32Bits(c.Confidence)))), $"{what}: committed");
        Assert.That(a.Remasked.Select(r => (r.Position, BitConverter.SingleToInt32Bits(r.Delta))),
            Is.EqualTo(e.Remasked.Select(r => (r.Position, BitConverter.SingleToInt32Bits(r.Delta)))), $"{what}: re-masked");
    }
}
