using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Saber.Cuda;
using Saber.Native;
using Saber.Onnx;
using Saber.Onnx.Gpu;
using Saber.Onnx.Gpu.Harness;

namespace Saber.Benchmarks;

/// <summary>
/// The GPU engine's checks and one step's timing, for the day a GPU is lent (bench/run_gpu.sh), with a dry run on the CPU
/// that runs the same code paths there so that it cannot rot:
/// (a) the device engine's logits (<see cref="OnnxDeviceDenoiser"/>) against the CPU engine's (<see cref="OnnxDenoiser"/>)
/// within <see cref="Tolerance"/>; (b) <see cref="CudaSampler"/> on the device logits against <see cref="CpuSampler"/> on
/// the same logits copied back, bit for bit (dry run: <see cref="CpuSampler"/> on the device engine's binding code against
/// <see cref="CpuSampler"/> on the CPU engine); (c) one step's time split into the forward pass, the step kernels and
/// the host time around them. Exit 0 when every check passed, 1 when one failed, 2 on a usage error, 3 when this machine
/// cannot run the GPU engine (the reason is the one line on stdout).
/// </summary>
internal static unsafe class GpuForward
{
    /// <summary>Largest absolute difference allowed between the CUDA provider's float32 logits and the CPU provider's (TF32 off).</summary>
    public const double Tolerance = 1e-3;

    public const string Usage =
        "usage: Saber.Benchmarks gpu-forward --model DIR [--dry-run] [--out FILE.md] [--batch B (2)] [--prompt-length P (16)] [--gen-length G (32)] [--steps N (20)]";

    private const int WarmupForwards = 2, Seed = 1234;

    private sealed record Settings(string Model, bool DryRun, string? Out, int Batch, int PromptLength, int GenLength, int Steps);

    private sealed class UsageException(string message) : Exception(message);

    public static int Run(string[] args)
    {
        Settings settings;
        try
        {
            settings = Parse(args);
        }
        catch (UsageException e)
        {
            Console.Error.WriteLine($"gpu-forward: {e.Message}");
            Console.Error.WriteLine(Usage);
            return 2;
        }
        if (!settings.DryRun)
        {
            IReadOnlyList<string> missing = GpuRuntime.Missing(ExecutionProvider.Cuda, 0);
            if (missing.Count > 0)
            {
                Console.WriteLine($"the onnx-cuda engine cannot run here: {string.Join("; ", missing)}");
                return 3;
            }
        }
        var report = new Report(settings, args);
        bool passed;
        try
        {
            passed = settings.DryRun ? RunOnTheCpu(settings, report) : RunOnTheGpu(settings, report);
        }
        catch (UsageException e)
        {
            Console.Error.WriteLine($"gpu-forward: {e.Message}");
            return 2;
        }
        catch (Exception e) when (!settings.DryRun && e is SaberNativeException or SaberNativeLibraryException or GpuUnavailableException)
        {
            Console.WriteLine($"libsaber_native or the GPU cannot run the device engine here: {e.Message.ReplaceLineEndings(" ")}");
            return 3;
        }
        report.Line();
        report.Line($"**Result: {(passed ? "PASS" : "FAIL")}** (every check above {(passed ? "passed" : "did not pass")}).");
        if (settings.Out is null) Console.Write(report.Text);
        else
        {
            string? folder = Path.GetDirectoryName(Path.GetFullPath(settings.Out));
            if (folder is not null) Directory.CreateDirectory(folder);
            File.WriteAllText(settings.Out, report.Text);
            Console.Error.WriteLine($"gpu-forward: {(passed ? "PASS" : "FAIL")}; report written to {settings.Out}");
        }
        return passed ? 0 : 1;
    }

    private static Settings Parse(string[] args)
    {
        string? model = null, output = null;
        bool dryRun = false;
        int batch = 2, prompt = 16, generation = 32, steps = 20;
        for (int i = 0; i < args.Length; i++)
        {
            string name = args[i];
            if (name == "--dry-run")
            {
                dryRun = true;
                continue;
            }
            if (i + 1 >= args.Length) throw new UsageException($"{name} needs a value");
            string value = args[++i];
            switch (name)
            {
                case "--model": model = value; break;
                case "--out": output = value; break;
                case "--batch": batch = Positive(name, value); break;
                case "--prompt-length": prompt = Positive(name, value); break;
                case "--gen-length": generation = Positive(name, value); break;
                case "--steps": steps = Positive(name, value); break;
                default: throw new UsageException($"unknown option '{name}'");
            }
        }
        if (model is null) throw new UsageException("--model DIR is required");
        if (!Directory.Exists(model)) throw new UsageException($"no model directory '{model}'");
        return new Settings(model, dryRun, output, batch, prompt, generation, steps);
    }

    private static int Positive(string name, string value) =>
        int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) && n > 0 ? n : throw new UsageException($"{name} must be a positive integer; got '{value}'");

    // ---- the two modes ----

    private static bool RunOnTheGpu(Settings settings, Report report)
    {
        using LocalDeviceModel device = LocalDeviceModel.Open(settings.Model, new OnnxEngineOptions { Provider = ExecutionProvider.Cuda });
        using OnnxDenoiser cpu = OnnxDenoiser.Load(Path.Combine(settings.Model, LocalModel.ModelFileName));
        CudaContext context = device.Context;
        OnnxDeviceDenoiser engine = device.Denoiser;
        report.Header("GPU (ONNX Runtime's CUDA provider, device 0; TF32 off)", engine);
        using var run = new DeviceRun(engine, context);
        Batch batch = Batch.Make(settings, engine);

        bool logits = CheckLogits(report, run, cpu, batch, "the CUDA provider writing into a device buffer", "the CPU engine (OnnxDenoiser, CPU provider)");

        report.Section("(b) CudaSampler on the device logits = CpuSampler on the same logits copied back, bit for bit");
        DecodeOptions options = DecodeOptionsFor(settings);
        var recording = new RecordingDenoiser(engine, context);
        DecodeResult gpu = new CudaSampler(context).DecodeAsync(recording, batch.Prompts, options).GetAwaiter().GetResult();
        var replay = new ReplayDenoiser(recording);
        DecodeResult host;
        bool sampler;
        try
        {
            host = new CpuSampler().DecodeAsync(replay, batch.Prompts, options).GetAwaiter().GetResult();
            sampler = CompareDecodes(report, gpu, host, "CudaSampler (device logits)", "CpuSampler (the recorded logits)");
        }
        catch (InvalidOperationException e) when (e.Message.StartsWith("replay:", StringComparison.Ordinal))
        {
            report.Line($"- FAIL: {e.Message}");
            sampler = false;
        }
        report.Line($"- The recording engine synchronised after each forward pass and copied the step's canvases and logits " +
            $"[{batch.Count}, {batch.Length}, {engine.VocabularySize}] to the host ({recording.Steps.Count} steps); " +
            $"the replay handed CpuSampler each step's rows from the prompt's end. Canvases the CPU sampler asked for that " +
            $"differ from the device's at the same step: {replay.CanvasMismatches}.");
        if (replay.CanvasMismatches > 0) sampler = false;

        TimeOnTheGpu(report, settings, engine, context, batch, options);
        return logits && sampler;
    }

    private static bool RunOnTheCpu(Settings settings, Report report)
    {
        string file = Path.Combine(settings.Model, LocalModel.ModelFileName);
        using OnnxDenoiser cpu = OnnxDenoiser.Load(file);
        using OnnxDeviceDenoiser engine = OnnxDeviceDenoiser.Load(file, new OnnxEngineOptions { Provider = ExecutionProvider.Cpu },
            new HostModelMemory(), stream: 0, logger: null);
        report.Header("dry run on the CPU (the device engine's binding code on host memory with ONNX Runtime's CPU provider; no CUDA context)", engine);
        using var run = new DeviceRun(engine, context: null);
        Batch batch = Batch.Make(settings, engine);

        bool logits = CheckLogits(report, run, cpu, batch, "the device engine's binding code (CPU provider, host memory)", "the CPU engine (OnnxDenoiser)");
        if (logits && batch.LastMaxDifference != 0)
            report.Line("- Note: the same graph on the same provider was expected to give a difference of 0.");

        report.Section("(b) CpuSampler on the device engine's binding code = CpuSampler on the CPU engine, bit for bit");
        report.Line("- Dry run: no CudaSampler (no GPU). The host-side adapter lays each step's canvases out as a decode does on the device.");
        DecodeOptions options = DecodeOptionsFor(settings);
        DecodeResult bound = new CpuSampler().DecodeAsync(new HostDeviceDenoiser(run), batch.Prompts, options).GetAwaiter().GetResult();
        DecodeResult reference = new CpuSampler().DecodeAsync(cpu, batch.Prompts, options).GetAwaiter().GetResult();
        bool sampler = CompareDecodes(report, bound, reference, "CpuSampler on the binding code", "CpuSampler on OnnxDenoiser");

        report.Section("(c) Timing (measured in this run, on this machine's CPU)");
        var forward = new List<double>();
        var reference1 = new List<double>();
        var request = new DenoiseRequest(1, Enumerable.Range(0, batch.Count).ToArray(), batch.Canvases.Select(c => (ReadOnlyMemory<int>)c).ToArray())
        {
            LogitsFrom = batch.PromptLengths,
        };
        for (int i = 0; i < settings.Steps + WarmupForwards; i++)
        {
            run.Forward(1, batch.Canvases, batch.PromptLengths);
            double ms = run.LastForwardMs;
            long start = Stopwatch.GetTimestamp();
            cpu.ForwardAsync(request, CancellationToken.None).AsTask().GetAwaiter().GetResult();
            double cpuMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            if (i < WarmupForwards) continue;
            forward.Add(ms);
            reference1.Add(cpuMs);
        }
        report.Line($"{settings.Steps} forward passes of the batch after {WarmupForwards} warm-up passes; wall time (Stopwatch) per pass.");
        report.Line();
        report.Line("| quantity | median ms | min ms | samples | definition |");
        report.Line("|---|---|---|---|---|");
        report.Row("forward, device engine's binding code", forward, "Stopwatch around OnnxDeviceDenoiser.ForwardAsync of the batch alone: widening the ids and ONNX Runtime's CPU run writing into the [B, L, V] host buffer (the buffers are filled and read outside it)");
        report.Row("forward, CPU engine (for reference)", reference1, "Stopwatch around OnnxDenoiser.ForwardAsync of the same canvases (rows from each prompt's end)");
        report.Line("| step kernels | not run (dry run: no GPU) | | | |");
        report.Line("| managed overhead | not run (dry run: no GPU) | | | |");
        return logits && sampler;
    }

    private static DecodeOptions DecodeOptionsFor(Settings settings) => new() { GenerationLength = settings.GenLength, Trace = true };

    // ---- (a) logits ----

    private static bool CheckLogits(Report report, DeviceRun run, OnnxDenoiser cpu, Batch batch, string engineName, string referenceName)
    {
        report.Section($"(a) Logits: {engineName} against {referenceName}");
        float[][][] actual = run.Rows(run.Forward(1, batch.Canvases, batch.PromptLengths), batch.SequenceLengths, batch.PromptLengths, batch.Length);
        float[][][] expected = DeviceRun.CpuRows(cpu, batch.Canvases, batch.PromptLengths);
        double worst = 0;
        int nonFinite = 0;
        long compared = 0;
        string worstAt = "-";
        for (int b = 0; b < batch.Count; b++)
            for (int r = 0; r < actual[b].Length; r++)
            {
                int position = batch.PromptLengths[b] + r;
                float[] want = expected[b][r], got = actual[b][r];
                for (int v = 0; v < got.Length; v++)
                {
                    compared++;
                    if (!float.IsFinite(got[v]) || !float.IsFinite(want[v]))
                    {
                        nonFinite++;
                        continue;
                    }
                    double d = Math.Abs((double)got[v] - want[v]);
                    if (d > worst)
                    {
                        worst = d;
                        worstAt = $"sequence {b}, position {position}, token {v}";
                    }
                }
            }
        batch.LastMaxDifference = worst;
        bool passed = nonFinite == 0 && worst <= Tolerance;
        report.Line($"- Batch of {batch.Count} canvases, prompt lengths {string.Join(", ", batch.PromptLengths)} (seeded random ids, none the mask id) " +
            $"each followed by {batch.Generation} masks; row pitch L = {batch.Length}; int32 canvases [B, L] in one buffer, logits [B, L, V] in another " +
            $"(filled with NaN first, so an unwritten row shows).");
        report.Line($"- Compared each sequence's rows from its prompt's end: {compared} values; non-finite: {nonFinite}.");
        report.Line(FormattableString.Invariant($"- Max absolute difference: {worst:G6} (at {worstAt}); tolerance {Tolerance:G}: **{(passed ? "PASS" : "FAIL")}**"));
        return passed;
    }

    // ---- (b) decodes ----

    /// <summary>Equal canvases, NFE and traces (steps, tau, committed and re-masked positions, tokens, confidences, deltas), bit for bit.</summary>
    private static bool CompareDecodes(Report report, DecodeResult actual, DecodeResult expected, string actualName, string expectedName)
    {
        var differences = new List<string>();
        int steps = 0, committed = 0, remasked = 0;
        for (int b = 0; b < expected.Sequences.Count; b++)
        {
            SequenceResult a = actual.Sequences[b], e = expected.Sequences[b];
            if (!a.Canvas.AsSpan().SequenceEqual(e.Canvas)) differences.Add($"sequence {b}: canvases differ ({Differing(a.Canvas, e.Canvas)})");
            if (a.Nfe != e.Nfe) differences.Add($"sequence {b}: NFE {a.Nfe} vs {e.Nfe}");
            if (a.Trace.Count != e.Trace.Count) differences.Add($"sequence {b}: {a.Trace.Count} trace steps vs {e.Trace.Count}");
            for (int s = 0; s < Math.Min(a.Trace.Count, e.Trace.Count); s++)
            {
                StepTrace x = a.Trace[s], y = e.Trace[s];
                steps++;
                committed += y.Committed.Count;
                remasked += y.Remasked.Count;
                string at = $"sequence {b}, trace entry {s} (step {y.Step})";
                if (x.Step != y.Step) differences.Add($"{at}: step number {x.Step} vs {y.Step}");
                if (x.Tau.HasValue != y.Tau.HasValue || (x.Tau.HasValue && BitConverter.DoubleToInt64Bits(x.Tau!.Value) != BitConverter.DoubleToInt64Bits(y.Tau!.Value)))
                    differences.Add(FormattableString.Invariant($"{at}: tau {x.Tau:R} vs {y.Tau:R}"));
                if (x.Committed.Count != y.Committed.Count) differences.Add($"{at}: {x.Committed.Count} committed vs {y.Committed.Count}");
                else
                    for (int i = 0; i < x.Committed.Count; i++)
                    {
                        CommittedToken p = x.Committed[i], q = y.Committed[i];
                        if (p.Position != q.Position || p.Token != q.Token || BitConverter.SingleToInt32Bits(p.Confidence) != BitConverter.SingleToInt32Bits(q.Confidence))
                            differences.Add(FormattableString.Invariant($"{at}: committed {p} vs {q}"));
                    }
                if (x.Remasked.Count != y.Remasked.Count) differences.Add($"{at}: {x.Remasked.Count} re-masked vs {y.Remasked.Count}");
                else
                    for (int i = 0; i < x.Remasked.Count; i++)
                    {
                        RemaskedToken p = x.Remasked[i], q = y.Remasked[i];
                        if (p.Position != q.Position || BitConverter.SingleToInt32Bits(p.Delta) != BitConverter.SingleToInt32Bits(q.Delta))
                            differences.Add(FormattableString.Invariant($"{at}: re-masked {p} vs {q}"));
                    }
            }
        }
        bool passed = differences.Count == 0;
        report.Line($"- {actualName} vs {expectedName}; options: G = {expected.Sequences.FirstOrDefault()?.Canvas.Length - expected.Sequences.FirstOrDefault()?.PromptLength}, " +
            "block length = G, SaberStrategy (defaults), temperature 0, trace on.");
        report.Line($"- NFE per sequence: {string.Join(", ", expected.Sequences.Select(s => s.Nfe))} (expected) / {string.Join(", ", actual.Sequences.Select(s => s.Nfe))} (actual); " +
            $"compared {steps} trace steps, {committed} committed and {remasked} re-masked entries (positions, tokens, confidences, deltas, tau: bits).");
        foreach (string d in differences.Take(10)) report.Line($"  - {d}");
        if (differences.Count > 10) report.Line($"  - ... {differences.Count - 10} more differences");
        report.Line($"- Canvases, NFE and traces equal bit for bit: **{(passed ? "PASS" : "FAIL")}**");
        return passed;
    }

    private static string Differing(int[] a, int[] b)
    {
        int n = Math.Min(a.Length, b.Length);
        for (int i = 0; i < n; i++)
            if (a[i] != b[i]) return $"first at position {i}: {a[i]} vs {b[i]}";
        return $"lengths {a.Length} vs {b.Length}";
    }

    // ---- (c) timing on the GPU ----

    private static void TimeOnTheGpu(Report report, Settings settings, OnnxDeviceDenoiser engine, CudaContext context, Batch batch, DecodeOptions options)
    {
        report.Section("(c) One step's time (measured in this run, on this GPU)");
        options = options with { Trace = false };
        nint stream = context.Stream, handle = context.NativeHandle;
        var forwardGpu = new List<double>();
        var kernelsGpu = new List<double>();
        var wall = new List<double>();
        var forwardCall = new List<double>();
        var uncovered = new List<double>();
        int decodes = 0, skipped = 0, limit = WarmupForwards + 4 * settings.Steps + 64;
        NativeDecode? decode = null;
        int step = 0;
        try
        {
            for (int i = 0; forwardGpu.Count < settings.Steps && i < limit; i++)
            {
                if (decode is null)
                {
                    decode = NativeDecode.Create(context, options, engine.VocabularySize, engine.MaskId, batch.Prompts);
                    decodes++;
                    step = 0;
                }
                step++;
                void* e0, e1, e2;
                long start = Stopwatch.GetTimestamp();
                Check(SaberNative.EventRecord(handle, &e0));
                var request = new GpuForwardRequest(step, decode.Batch, decode.Length, decode.SequenceLengths, decode.CanvasPointer,
                    decode.LogitsPointer(engine.ElementType, step), stream) { LogitsFrom = decode.PromptLengths };
                long callStart = Stopwatch.GetTimestamp();
                engine.ForwardAsync(request, CancellationToken.None).AsTask().GetAwaiter().GetResult();
                double callMs = Stopwatch.GetElapsedTime(callStart).TotalMilliseconds;
                Check(SaberNative.EventRecord(handle, &e1));
                decode.Queue(step);
                Check(SaberNative.EventRecord(handle, &e2));
                int unfinished = decode.Poll();
                double wallMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                float forwardMs, kernelsMs;
                Check(SaberNative.EventElapsedMs(e0, e1, &forwardMs));
                Check(SaberNative.EventElapsedMs(e1, e2, &kernelsMs));
                SaberNative.EventDestroy(e0);
                SaberNative.EventDestroy(e1);
                SaberNative.EventDestroy(e2);
                // The first steps of the run warm up; the first step of each decode allocates its logits buffer and binds the engine.
                if (i < WarmupForwards || step == 1) skipped++;
                else
                {
                    forwardGpu.Add(forwardMs);
                    kernelsGpu.Add(kernelsMs);
                    wall.Add(wallMs);
                    forwardCall.Add(callMs);
                    uncovered.Add(wallMs - forwardMs - kernelsMs);
                }
                if (unfinished == 0)
                {
                    decode.Dispose();
                    decode = null;
                }
            }
        }
        finally
        {
            decode?.Dispose();
        }
        report.Line($"{forwardGpu.Count} timed steps of a native decode (NativeDecode) of the same prompts and options (trace off) driven one step at a time, " +
            $"over {decodes} decode(s): per step, event 0, the device engine's ForwardAsync, event 1, the step kernels (saber_decode_step), event 2, then a " +
            $"blocking poll of the step's status. Left out: {skipped} steps (the first {WarmupForwards} of the run, and the first of each decode, which " +
            "allocates the logits buffer and binds the engine's inputs).");
        report.Line();
        report.Line("| quantity | median ms | min ms | samples | definition |");
        report.Line("|---|---|---|---|---|");
        report.Row("forward (GPU)", forwardGpu, "CUDA events 0 → 1 on the context's stream: the ids widening and ONNX Runtime's kernels, as the GPU ran them (includes any time the GPU waited for ONNX Runtime to launch them)");
        report.Row("step kernels (GPU)", kernelsGpu, "CUDA events 1 → 2: saber_decode_step's kernels and the status copy");
        report.Row("step, host wall time", wall, "Stopwatch from before event 0 is recorded to the poll's return (the whole step as the host sees it)");
        report.Row("forward call (host)", forwardCall, "Stopwatch around OnnxDeviceDenoiser.ForwardAsync alone: binding checks, the widening launch and ONNX Runtime's run enqueuing its kernels (overlaps the GPU's work)");
        report.Row("managed overhead", uncovered, "per step, host wall time minus GPU time (events 0 → 2): host time the step's GPU work does not cover (launch latency before the first kernel, the event records, the poll's wake-up); an upper bound of what the host adds to a step when steps run one at a time (CudaSampler without trace queues one step ahead and hides part of it)");
    }

    private static void Check(SaberStatus status) => NativeStatus.Check(status, "a libsaber_native call");

    // ---- the inputs ----

    /// <summary>The batch every check runs: ragged prompts (P, P + 3, ...) of seeded random ids, then G masks each.</summary>
    private sealed class Batch
    {
        public required int[][] Canvases { get; init; }
        public required int[] PromptLengths { get; init; }
        public required ReadOnlyMemory<int>[] Prompts { get; init; }
        public required int Generation { get; init; }
        public required int MaskId { get; init; }
        public int Count => Canvases.Length;
        public int Length => PromptLengths.Max() + Generation;
        public int[] SequenceLengths => Canvases.Select(c => c.Length).ToArray();
        public double LastMaxDifference { get; set; }

        public static Batch Make(Settings settings, OnnxDeviceDenoiser engine)
        {
            int v = engine.VocabularySize, mask = engine.MaskId;
            var rng = new Random(Seed);
            int[] lengths = Enumerable.Range(0, settings.Batch).Select(b => settings.PromptLength + 3 * b).ToArray();
            int longest = lengths.Max() + settings.GenLength;
            if (engine.MaxSequenceLength is int max && longest > max)
                throw new UsageException($"the longest canvas ({longest}) exceeds the model's {max} positions");
            int[][] prompts = lengths.Select(p => Enumerable.Range(0, p).Select(_ => (mask + 1 + rng.Next(v - 1)) % v).ToArray()).ToArray();
            return new Batch
            {
                Canvases = prompts.Select(p => p.Concat(Enumerable.Repeat(mask, settings.GenLength)).ToArray()).ToArray(),
                PromptLengths = lengths,
                Prompts = prompts.Select(p => (ReadOnlyMemory<int>)p).ToArray(),
                Generation = settings.GenLength,
                MaskId = mask,
            };
        }
    }

    // ---- the report ----

    private sealed class Report(Settings settings, string[] args)
    {
        private readonly StringBuilder text = new();

        public string Text => text.ToString();

        public void Line(string line = "") => text.Append(line).Append('\n');

        public void Section(string title)
        {
            Line();
            Line($"## {title}");
            Line();
        }

        public void Header(string mode, OnnxDeviceDenoiser engine)
        {
            Line($"# GPU engine checks: gpu-forward{(settings.DryRun ? " (dry run)" : "")}");
            Line();
            Line($"- Date (UTC): {DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture)}");
            Line($"- Machine: {Environment.MachineName}, {Environment.ProcessorCount} logical processors, {RuntimeInformation.OSDescription}, .NET {Environment.Version}");
            Line($"- Command: `Saber.Benchmarks gpu-forward {string.Join(' ', args)}`");
            Line($"- Mode: {mode}");
            Line($"- Model: `{settings.Model}`: V = {engine.VocabularySize}, mask id {engine.MaskId}, {engine.ElementType} logits");
            Line($"- Batch {settings.Batch}, prompt length {settings.PromptLength} (+3 per further sequence), G = {settings.GenLength}, timed steps {settings.Steps}");
        }

        public void Row(string name, List<double> values, string definition)
        {
            if (values.Count == 0)
            {
                Line($"| {name} | - | - | 0 | {definition} |");
                return;
            }
            List<double> sorted = values.Order().ToList();
            double median = sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;
            Line(FormattableString.Invariant($"| {name} | {median:F3} | {sorted[0]:F3} | {values.Count} | {definition} |"));
        }
    }
}
