using Saber.Denoisers;

namespace Saber.Tests;

/// <summary>The .npy reader and the replay denoiser: good files decode, bad files say what is wrong.</summary>
public class ReplayDenoiserTests
{
    private string directory = "";

    [SetUp]
    public void CreateDirectory() => directory = Directory.CreateTempSubdirectory("saber-npy-").FullName;

    [TearDown]
    public void DeleteDirectory() => Directory.Delete(directory, recursive: true);

    private string PathOf(string name) => Path.Combine(directory, name);

    /// <summary>Logits for <paramref name="steps"/> steps of a canvas of length <paramref name="length"/>, from the random model's first step.</summary>
    private static float[] Recording(int steps, int length, int vocabulary, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, steps * length * vocabulary).Select(_ => (float)(rng.NextDouble() * 6 - 3)).ToArray();
    }

    [TestCase(1)]
    [TestCase(2)]
    [TestCase(3)]
    public async Task ReplayDecodesLikeTheSameLogitsServedFromMemory(int version)
    {
        const int steps = 12, p = 2, g = 10, v = 17, mask = 16;
        float[] data = Recording(steps, p + g, v, version);
        string file = NpyWriter.Write(PathOf("l.npy"), "<f4", [steps, p + g, v], data.SelectMany(BitConverter.GetBytes).ToArray(), version: version);
        var scripted = new ScriptedDenoiser(v, mask, (step, _, _) =>
            Enumerable.Range(0, p + g).Select(pos => data.AsSpan(((step - 1) * (p + g) + pos) * v, v).ToArray()).ToArray());
        var options = new DecodeOptions { GenerationLength = g, Strategy = new SaberStrategy(), Trace = true };

        using var replay = new ReplayDenoiser(file, mask);
        Assert.That((replay.Steps, replay.Length, replay.VocabularySize), Is.EqualTo((steps, p + g, v)));
        var fromFile = await new CpuSampler().DecodeAsync(replay, [new[] { 1, 2 }], options);
        var fromMemory = await new CpuSampler().DecodeAsync(scripted, [new[] { 1, 2 }], options);
        Assert.That(fromFile.Sequences[0].Canvas, Is.EqualTo(fromMemory.Sequences[0].Canvas));
        Assert.That(fromFile.Sequences[0].Trace.Select(t => t.Committed.Count), Is.EqualTo(fromMemory.Sequences[0].Trace.Select(t => t.Committed.Count)));
    }

    [Test]
    public void Float16FilesAreRead()
    {
        Half[] values = [(Half)1.5f, (Half)(-2f), (Half)0.25f, (Half)7f, (Half)0f, (Half)(-0.5f)];
        string file = NpyWriter.Write(PathOf("h.npy"), "<f2", [1, 2, 3], values.SelectMany(h => BitConverter.GetBytes(h)).ToArray());
        using var replay = new ReplayDenoiser(file, 2);
        var logits = replay.ForwardAsync(new DenoiseRequest(1, [0], [new int[2]]), default).Result[0];
        Assert.That(logits.ElementType, Is.EqualTo(LogitsElementType.Float16));
        Assert.That(Enumerable.Range(0, 6).Select(i => logits[i / 3, i % 3]), Is.EqualTo(values.Select(h => (float)h)));
    }

    [Test]
    public void RunningPastTheLastSliceNamesTheStep()
    {
        // Threshold 1 with random logits commits one token per step: 6 positions need 6 steps; 3 are recorded.
        string file = NpyWriter.WriteFloat32(PathOf("short.npy"), [3, 6, 5], Recording(3, 6, 5, 1));
        using var replay = new ReplayDenoiser(file, 4);
        var options = new DecodeOptions { GenerationLength = 6, Strategy = new ThresholdStrategy(1f) };
        var e = Assert.ThrowsAsync<InvalidOperationException>(() => new CpuSampler().DecodeAsync(replay, [Array.Empty<int>()], options));
        Assert.That(e!.Message, Does.Contain("Step 4 needs recorded slice 3").And.Contain("holds 3 steps"));
    }

    [Test]
    public void CanvasLengthDifferentFromTheRecording()
    {
        string file = NpyWriter.WriteFloat32(PathOf("l.npy"), [2, 6, 5], Recording(2, 6, 5, 1));
        using var replay = new ReplayDenoiser(file, 4);
        var options = new DecodeOptions { GenerationLength = 4 };
        var e = Assert.ThrowsAsync<InvalidLogitsException>(() => new CpuSampler().DecodeAsync(replay, [new[] { 1 }], options));
        Assert.That(e!.Message, Does.Contain(file).And.Contain("[6, 5] per step").And.Contain("expected [5, 5]"));
        Assert.That(() => replay.CheckCanvasLength(1, 4), Throws.ArgumentException.With.Message.Contain(file).And.Message.Contain("(2, 6, 5)")
            .And.Message.Contain("L = 6").And.Message.Contain("G = 4 makes 5"));
        Assert.That(() => replay.CheckCanvasLength(2, 4), Throws.Nothing);
    }

    [Test]
    public void ALongerCanvasIsRejectedBeforeAnythingIsAllocated()
    {
        string file = NpyWriter.WriteFloat32(PathOf("m.npy"), [2, 6, 5], Recording(2, 6, 5, 1));
        using var replay = new ReplayDenoiser(file, 4);
        Assert.That(((IDenoiser)replay).MaxSequenceLength, Is.EqualTo(6));
        var counting = new CountingDenoiser(replay);
        var e = Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => new CpuSampler().DecodeAsync(counting, [new[] { 1, 2, 3 }], new DecodeOptions { GenerationLength = 4 }));
        Assert.That(e!.ParamName, Is.EqualTo("GenerationLength"));
        Assert.That(e.Message, Does.Contain("Prompt 0 (3 tokens) plus generation length G=4 makes a canvas of 7 positions; the model takes at most 6."));
        Assert.That(counting.Calls, Is.Zero);
    }

    public static IEnumerable<TestCaseData> BadFiles()
    {
        byte[] f4(int n) => new byte[n * 4];
        TestCaseData Case(string name, Func<string, string> write, string message) => new TestCaseData(write, message).SetArgDisplayNames(name);
        yield return Case("not npy", p => { File.WriteAllText(p, "hello, world"); return p; }, "not a NumPy .npy file");
        yield return Case("empty", p => { File.WriteAllBytes(p, []); return p; }, "not a NumPy .npy file");
        yield return Case("float64", p => NpyWriter.Write(p, "<f8", [1, 2, 2], new byte[32]), "dtype '<f8' is not supported");
        yield return Case("big-endian", p => NpyWriter.Write(p, ">f4", [1, 2, 2], f4(4)), "dtype '>f4' is not supported");
        yield return Case("int64", p => NpyWriter.Write(p, "<i8", [1, 2, 2], new byte[32]), "dtype '<i8' is not supported");
        yield return Case("fortran", p => NpyWriter.Write(p, "<f4", [1, 2, 2], f4(4), fortran: true), "Fortran-ordered");
        yield return Case("rank 2", p => NpyWriter.Write(p, "<f4", [2, 2], f4(4)), "shape [steps, L, V]");
        yield return Case("rank 4", p => NpyWriter.Write(p, "<f4", [1, 1, 2, 2], f4(4)), "got (1, 1, 2, 2)");
        yield return Case("zero steps", p => NpyWriter.Write(p, "<f4", [0, 2, 2], []), "every dimension > 0");
        yield return Case("truncated", p => NpyWriter.Write(p, "<f4", [2, 2, 2], f4(7)), "truncated: shape (2, 2, 2) needs 32 bytes of data; the file holds 28");
        yield return Case("trailing bytes", p => NpyWriter.Write(p, "<f4", [1, 2, 2], f4(5)), "4 bytes follow the data");
        yield return Case("version 9", p => NpyWriter.Write(p, "<f4", [1, 2, 2], f4(4), version: 9), "unsupported .npy format version 9.0");
        yield return Case("malformed header", p => NpyWriter.Write(p, "<f4", [1, 2, 2], f4(4), header: "{'descr': '<f4'}"), "malformed .npy header");
        yield return Case("bad dimension", p => NpyWriter.Write(p, "<f4", [1], f4(4), header: "{'descr': '<f4', 'fortran_order': False, 'shape': (1, x, 2), }"), "bad dimension 'x'");
    }

    [TestCaseSource(nameof(BadFiles))]
    public void BadFilesAreRejectedWithTheReason(Func<string, string> write, string message)
    {
        string file = write(PathOf("bad.npy"));
        var e = Assert.Throws<InvalidDataException>(() => new ReplayDenoiser(file, 0));
        Assert.That(e!.Message, Does.Contain(message).And.StartWith(file));
    }

    [Test]
    public void MaskIdOutsideTheRecordedVocabulary()
    {
        string file = NpyWriter.WriteFloat32(PathOf("l.npy"), [1, 2, 5], new float[10]);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new ReplayDenoiser(file, 5));
        Assert.That(e!.Message, Does.Contain("[0, V=5)").And.Contain("got 5"));
    }

    [Test]
    public void MissingFile() =>
        Assert.Throws<FileNotFoundException>(() => new ReplayDenoiser(PathOf("missing.npy"), 0));
}
