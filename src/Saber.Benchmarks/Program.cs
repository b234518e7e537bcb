using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using Saber.Benchmarks;

// dotnet run -c Release --project src/Saber.Benchmarks [-- BenchmarkDotNet options, e.g. --filter *]
// dotnet run -c Release --project src/Saber.Benchmarks -- gpu-overhead [--decodes N]   (needs a GPU)
// dotnet run -c Release --project src/Saber.Benchmarks [-p:SaberOnnxRuntime=gpu] -- gpu-forward --model DIR [--dry-run] [--out FILE.md] [--batch 2] [--prompt-length 16] [--gen-length 32] [--steps 20]
//     (the GPU engine against the CPU engine, and one step's time; --dry-run runs its checks on the CPU; exit 3: no GPU engine here)
// dotnet run -c Release --project src/Saber.Benchmarks -- service [--requests N] [--concurrency 1,8,32,128] [--model DIR]
// dotnet run -c Release --project src/Saber.Benchmarks -- engine-step DIR_A DIR_B [--length 96] [--prompt 32] [--batch 1] [--passes 40] [--all-rows]
// dotnet run -c Release --project src/Saber.Benchmarks -- cache --model DIR [--set FILE --limit N] [--gen-length G] [--block-length K] [--refresh-every R]
// dotnet run -c Release --project src/Saber.Benchmarks -- serve-load [--clients 64] [--requests 10] [--max-tokens 32] [--limit N] [--model DIR] [--out FILE]
if (args.Length > 0 && args[0] == "gpu-overhead") return GpuOverhead.Run(args[1..]);
if (args.Length > 0 && args[0] == "gpu-forward") return GpuForward.Run(args[1..]);
if (args.Length > 0 && args[0] == "service") return await ServiceBenchmark.RunAsync(args[1..]);
if (args.Length > 0 && args[0] == "serve-load") return await ServeLoadBenchmark.RunAsync(args[1..]);
if (args.Length > 0 && args[0] == "engine-step") return await EngineStepBenchmark.RunAsync(args[1..]);
if (args.Length > 0 && args[0] == "cache") return await CacheBenchmark.RunAsync(args[1..]);
var config = DefaultConfig.Instance
    .AddJob(Job.Default.WithWarmupCount(2).WithIterationCount(10).WithId("step"))
    .AddColumn(new LogitsBandwidthColumn())
    .WithSummaryStyle(SummaryStyle.Default.WithRatioStyle(RatioStyle.Trend));
BenchmarkSwitcher.FromAssembly(typeof(CpuStepBenchmark).Assembly).Run(args.Length == 0 ? ["--filter", "*"] : args, config);
return 0;

/// <summary>GB/s of logits read: 256 · V · element size per step, over the mean time.</summary>
internal sealed class LogitsBandwidthColumn : IColumn
{
    public string Id => nameof(LogitsBandwidthColumn);
    public string ColumnName => "Logits GB/s";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => "Logits bytes read per step divided by the mean time (10^9 bytes/s)";
    public bool IsAvailable(Summary summary) => true;
    public bool IsDefault(Summary summary, BenchmarkDotNet.Running.BenchmarkCase benchmarkCase) => false;
    public string GetValue(Summary summary, BenchmarkDotNet.Running.BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkDotNet.Running.BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var stats = summary[benchmarkCase]?.ResultStatistics;
        if (stats is null) return "-";
        var type = (Saber.LogitsElementType)benchmarkCase.Parameters["ElementType"];
        double bytes = (double)CpuStepBenchmark.Positions * CpuStepBenchmark.Vocabulary * (type == Saber.LogitsElementType.Float32 ? 4 : 2);
        return (bytes / stats.Mean).ToString("F2", System.Globalization.CultureInfo.InvariantCulture); // bytes/ns = GB/s
    }
}
