using System.Globalization;
using Microsoft.Extensions.Logging;
using Saber.Denoisers;

namespace Saber.Cli;

internal static class ReplayCommand
{
    public const string Usage =
        "usage: saber replay --logits FILE.npy --prompt-tokens 1,2,3 --mask-id M --gen-length G\n" +
        "                    [--block-length K] [--device cpu|cuda] [--json] [strategy options]\n" +
        StrategyArguments.Usage + "\n" +
        "The .npy holds float32 (or float16) logits of shape [steps, P+G, V]; step t reads slice t-1.\n" +
        "--json prints one JSON object {tokens, nfe, remasks, remasks_changed, positions_remasked_twice, trace} on stdout;\n" +
        "otherwise a readable table.\n" +
        "--device cuda decodes with libsaber_native's kernels (SABER_NATIVE_LIBRARY, or next to saber).";

    public static async Task<int> RunAsync(string[] argv, TextWriter stdout, TextWriter stderr, ILoggerFactory logging, CancellationToken cancellationToken)
    {
        var args = new Arguments(argv, new HashSet<string>(StrategyArguments.Flags.Append("--json")));
        string path = args.RequiredText("--logits");
        int[] prompt = args.IntList("--prompt-tokens");
        int maskId = args.RequiredInt("--mask-id");
        DecodingStrategy strategy = StrategyArguments.Read(args);
        var (temperature, seed) = StrategyArguments.Sampling(args);
        var options = new DecodeOptions
        {
            GenerationLength = args.RequiredInt("--gen-length"),
            BlockLength = args.Int("--block-length"),
            Strategy = strategy,
            Temperature = temperature,
            Seed = seed ?? 0,
            Trace = true,
        };
        bool json = args.Flag("--json");
        bool cuda = (args.Text("--device") ?? "cpu") switch
        {
            "cpu" => false,
            "cuda" => true,
            var other => throw new UsageException($"--device expects cpu or cuda; got '{other}'."),
        };
        args.RejectUnknown();
        options.Validate();
        StrategyArguments.WarnAboutSeed(options, seed is not null, "replay", stderr);

        using var denoiser = new ReplayDenoiser(path, maskId);
        denoiser.CheckCanvasLength(prompt.Length, options.GenerationLength);
        using Saber.Cuda.CudaContext? context = cuda ? Saber.Cuda.CudaContext.Create() : null;
        ISampler sampler = context is null
            ? new CpuSampler(logging.CreateLogger<CpuSampler>())
            : new Saber.Cuda.CudaSampler(context, logging.CreateLogger<Saber.Cuda.CudaSampler>());
        DecodeResult result = await sampler.DecodeAsync(denoiser, [prompt], options, cancellationToken);
        SequenceResult sequence = result.Sequences[0];
        if (json)
        {
            stdout.WriteLine(TraceJson.Write(sequence));
            return 0;
        }

        var inv = CultureInfo.InvariantCulture;
        stdout.WriteLine($"{StrategyArguments.Describe(options.Strategy)} on {path}: NFE {sequence.Nfe}, {result.Elapsed.TotalMilliseconds.ToString("F1", inv)} ms");
        stdout.WriteLine($"{"step",5} {"tau",8}  committed (position:token@confidence)  re-masked (position:delta)");
        foreach (StepTrace step in sequence.Trace)
        {
            string tau = step.Tau is double t ? t.ToString("F4", inv) : "-";
            string committed = string.Join(' ', step.Committed.Select(c => string.Create(inv, $"{c.Position}:{c.Token}@{c.Confidence:F3}")));
            string remasked = string.Join(' ', step.Remasked.Select(r => string.Create(inv, $"{r.Position}:{r.Delta:F3}")));
            stdout.WriteLine($"{step.Step,5} {tau,8}  {committed}{(remasked.Length > 0 ? "  | " + remasked : "")}");
        }
        if (sequence.RemaskStatistics is { } remasks)
            stdout.WriteLine($"re-masks: {remasks.Remasks}, {remasks.RemasksChanged} came back as a different token, " +
                $"{remasks.PositionsRemaskedTwice} position(s) re-masked more than once");
        stdout.WriteLine($"tokens: {string.Join(',', sequence.Tokens.ToArray())}");
        return 0;
    }
}
