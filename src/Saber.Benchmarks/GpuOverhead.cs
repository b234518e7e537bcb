using System.Diagnostics;
using System.Globalization;
using Saber.Cuda;
using Saber.Native;

namespace Saber.Benchmarks;

/// <summary>
/// The managed per-step overhead of <see cref="CudaSampler"/> with a GPU engine: the time between two
/// consecutive forward calls (one turn of the C# loop: step P/Invoke, status poll, loop bookkeeping, plus the
/// step's device time) minus the device time of the same step, measured with CUDA events around each
/// step of a native decode fed the same logits (so both follow the same trajectory).
/// <c>dotnet run -c Release --project src/Saber.Benchmarks -- gpu-overhead [--decodes N]</c>
/// </summary>
internal static unsafe class GpuOverhead
{
    private const int Vocabulary = 126464, Generation = 256, BlockLength = 32;

    public static int Run(string[] args)
    {
        int decodes = args.Length == 2 && args[0] == "--decodes" ? int.Parse(args[1], CultureInfo.InvariantCulture) : 20;
        CudaContext context;
        try
        {
            context = CudaContext.Create();
        }
        catch (Exception e) when (e is SaberNativeException or SaberNativeLibraryException)
        {
            Console.Error.WriteLine($"gpu-overhead needs a CUDA device and libsaber_native built with CUDA: {e.Message}");
            return 1;
        }
        using var owned = context;
        var options = new DecodeOptions { GenerationLength = Generation, BlockLength = BlockLength, Strategy = new SaberStrategy() };
        int mask = Vocabulary - 1;
        ReadOnlyMemory<int>[] prompts = [new[] { 1, 2, 3 }];
        ushort[] logits = RandomBfloat16Logits((prompts[0].Length + Generation) * Vocabulary);

        var engine = new FixedLogitsEngine(context, logits, Vocabulary, mask);
        var sampler = new CudaSampler(context);
        var intervals = new List<double>();
        for (int d = 0; d < decodes + 2; d++)   // two warm-up decodes
        {
            engine.Reset();
            sampler.DecodeAsync(engine, prompts, options).GetAwaiter().GetResult();
            if (d >= 2) intervals.AddRange(engine.IntervalsUs());
        }

        List<double> device = NativeStepTimesUs(context, options, logits, mask, prompts[0].ToArray(), decodes);
        double managedMedian = Median(intervals), deviceMedian = Median(device);
        Console.WriteLine($"GPU engine loop, V={Vocabulary}, G={Generation}, K={BlockLength}, batch 1, bf16, Saber reference; {decodes} decodes");
        Console.WriteLine("| quantity | median us | p90 us | samples |");
        Console.WriteLine("|---|---|---|---|");
        Console.WriteLine(FormattableString.Invariant($"| managed loop turn (forward to forward) | {managedMedian:F1} | {Percentile(intervals, 0.9):F1} | {intervals.Count} |"));
        Console.WriteLine(FormattableString.Invariant($"| device time of the step (CUDA events) | {deviceMedian:F1} | {Percentile(device, 0.9):F1} | {device.Count} |"));
        Console.WriteLine(FormattableString.Invariant($"| managed overhead per step (difference of medians) | {managedMedian - deviceMedian:F1} | | |"));
        return 0;
    }

    private static ushort[] RandomBfloat16Logits(int count)
    {
        var random = new Random(1234);
        var bits = new ushort[count];
        for (int i = 0; i < count; i++)
            bits[i] = (ushort)(BitConverter.SingleToUInt32Bits((float)(random.NextDouble() * 16 - 8)) >> 16);
        return bits;
    }

    /// <summary>Device time of every step of native decodes over the same logits, one event pair per step.</summary>
    private static List<double> NativeStepTimesUs(CudaContext context, DecodeOptions options, ushort[] logits, int mask, int[] prompt, int decodes)
    {
        nint contextHandle = context.NativeHandle;
        var times = new List<double>();
        nint buffer;
        Check(SaberNative.BufferCreate(contextHandle, (ulong)logits.Length * 2, &buffer));
        try
        {
            fixed (ushort* host = logits)
                Check(SaberNative.BufferUpload(buffer, 0, host, (ulong)logits.Length * 2));
            void* device;
            Check(SaberNative.BufferDevicePointer(buffer, &device));
            // The same options the sampler passes, so both decodes follow one trajectory.
            SaberDecodeOptions native = NativeDecode.ToNative(options);
            int length = prompt.Length;
            for (int d = 0; d < decodes + 2; d++)
            {
                nint decode;
                fixed (int* tokens = prompt)
                    Check(SaberNative.DecodeCreate(contextHandle, &native, Vocabulary, mask, 1, tokens, &length, 0, &decode));
                try
                {
                    SaberDecodeStatus status;
                    do
                    {
                        void* start, end;
                        Check(SaberNative.EventRecord(contextHandle, &start));
                        Check(SaberNative.DecodeStep(decode, device, (int)SaberDtype.Bfloat16));
                        Check(SaberNative.EventRecord(contextHandle, &end));
                        Check(SaberNative.DecodePoll(decode, &status));
                        float ms;
                        Check(SaberNative.EventElapsedMs(start, end, &ms));
                        SaberNative.EventDestroy(start);
                        SaberNative.EventDestroy(end);
                        if (d >= 2) times.Add(ms * 1000.0);
                    } while (status.ActiveSequences > 0);
                }
                finally
                {
                    SaberNative.DecodeDestroy(decode);
                }
            }
        }
        finally
        {
            SaberNative.BufferDestroy(buffer);
        }
        return times;
    }

    // The library's one status-to-exception path, carrying the native message.
    private static void Check(SaberStatus status) => NativeStatus.Check(status, "a libsaber_native call");

    private static double Median(List<double> values) => Percentile(values, 0.5);

    private static double Percentile(List<double> values, double p)
    {
        if (values.Count == 0) return double.NaN;
        var sorted = values.Order().ToList();
        return sorted[(int)Math.Min(sorted.Count - 1, Math.Floor(p * sorted.Count))];
    }

    /// <summary>A GPU engine with nothing to compute: the same logits every step, copied to the device once.</summary>
    private sealed class FixedLogitsEngine(CudaContext context, ushort[] logits, int vocabulary, int mask) : IGpuDenoiser
    {
        private readonly List<long> calls = [];
        private nint uploadedTo;

        public int VocabularySize => vocabulary;
        public int MaskId => mask;
        public LogitsElementType ElementType => LogitsElementType.BFloat16;

        public void Reset()
        {
            calls.Clear();
            uploadedTo = 0;
        }

        public IEnumerable<double> IntervalsUs() =>
            calls.Zip(calls.Skip(1), (a, b) => (b - a) * 1e6 / Stopwatch.Frequency);

        public ValueTask ForwardAsync(GpuForwardRequest request, CancellationToken cancellationToken)
        {
            calls.Add(Stopwatch.GetTimestamp());
            if (uploadedTo != request.Logits)
            {
                context.CopyToDevice<ushort>(logits, request.Logits);   // once per decode, before its first step
                uploadedTo = request.Logits;
            }
            return ValueTask.CompletedTask;
        }
    }
}
