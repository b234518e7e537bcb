using Microsoft.Extensions.Logging;

namespace Saber.Cli;

public static class Program
{
    public const string Usage =
        "usage: saber <command> [options]\n" +
        "commands:\n" +
        "  demo     the main job on the shipped task model: watch Saber solve a held-out problem, then compare strategies\n" +
        "  generate complete prompts with a model (default: the shipped models/tiny, ONNX Runtime on the CPU)\n" +
        "  compare  one prompt set through Saber, low-confidence (S = G) and threshold 0.9: NFE, wall time, tokens/s\n" +
        "  eval     a held-out problem set through every strategy: exact-match accuracy, NFE, wall time (default: models/addition)\n" +
        "  replay   decode against logits recorded in a .npy file [steps, L, V]\n" +
        "  serve    an OpenAI-compatible HTTP server (chat and text completions) on the configured models\n" +
        "  import   turn a Hugging Face LLaDA or Dream checkpoint into a model folder (model.onnx and its weights);\n" +
        "           --cache-graph MODEL_DIR adds the KV-cache graph (model.cache.onnx) to an existing one\n" +
        "common options: --verbose (log to stderr), --help; --version prints the version;\n" +
        "-- ends the options (what follows is a prompt, even if it starts with --)";

    /// <summary>The informational version of this build (what <c>saber --version</c> prints).</summary>
    public static string Version =>
        typeof(Program).Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
            .OfType<System.Reflection.AssemblyInformationalVersionAttribute>().FirstOrDefault()?.InformationalVersion
        ?? typeof(Program).Assembly.GetName().Version?.ToString() ?? "unknown";

    public static async Task<int> Main(string[] args)
    {
        using var cancel = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            cancel.Cancel();
        };
        return await RunAsync(args, Console.Out, Console.Error, cancel.Token);
    }

    private static string CommandUsage(string command) => command switch
    {
        "replay" => ReplayCommand.Usage,
        "demo" => DemoCommand.Usage,
        "generate" => GenerateCommand.Usage,
        "compare" => CompareCommand.Usage,
        "serve" => ServeCommand.Usage,
        "eval" => EvalCommand.Usage,
        "import" => ImportCommand.Usage,
        _ => Usage,
    };

    /// <summary>Runs one command; returns the process exit code (0 success, 1 failure, 2 usage, 130 cancelled).</summary>
    public static async Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken cancellationToken = default)
    {
        if (args.Length == 0 || args[0] is "--help" or "-h" or "help")
        {
            (args.Length == 0 ? stderr : stdout).WriteLine(Usage);
            return args.Length == 0 ? 2 : 0;
        }
        if (args[0] is "--version" or "version")
        {
            stdout.WriteLine($"saber {Version}");
            return 0;
        }
        string command = args[0];
        string[] rest = args[1..];
        // Options end at "--": a prompt after it may read "--help" or "--verbose".
        int end = Array.IndexOf(rest, "--");
        ArraySegment<string> options = new(rest, 0, end < 0 ? rest.Length : end);
        if (options.Contains("--help"))
        {
            stdout.WriteLine(CommandUsage(command));
            return 0;
        }
        bool verbose = options.Contains("--verbose");
        rest = [.. options.Where(a => a != "--verbose"), .. rest.AsSpan(options.Count)];
        using ILoggerFactory logging = LoggerFactory.Create(builder =>
        {
            builder.SetMinimumLevel(verbose ? LogLevel.Debug : LogLevel.Warning);
            // stdout carries results (JSON); every log line goes to stderr.
            builder.AddSimpleConsole(o => o.SingleLine = true).AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        });
        try
        {
            return command switch
            {
                "replay" => await ReplayCommand.RunAsync(rest, stdout, stderr, logging, cancellationToken),
                "demo" => await DemoCommand.RunAsync(rest, stdout, logging, cancellationToken),
                "generate" => await GenerateCommand.RunAsync(rest, stdout, stderr, logging, cancellationToken),
                "compare" => await CompareCommand.RunAsync(rest, stdout, stderr, logging, cancellationToken),
                "eval" => await EvalCommand.RunAsync(rest, stdout, stderr, logging, cancellationToken),
                "serve" => await ServeCommand.RunAsync(rest, stdout, verbose, cancellationToken),
                "import" => await ImportCommand.RunAsync(rest, stdout, stderr, logging, cancellationToken),
                _ => throw new UsageException($"Unknown command '{command}'."),
            };
        }
        catch (UsageException e)
        {
            stderr.WriteLine($"saber {command}: {e.Message}");
            stderr.WriteLine(CommandUsage(command));
            return 2;
        }
        catch (OperationCanceledException)
        {
            stderr.WriteLine($"saber {command}: cancelled");
            return 130;
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or InvalidLogitsException or InvalidDataException or InvalidOperationException or IOException
                                       or UnauthorizedAccessException or Saber.Cuda.SaberNativeException or DllNotFoundException
                                       or Microsoft.ML.OnnxRuntime.OnnxRuntimeException or Saber.Text.ChatTemplateException)
        {
            stderr.WriteLine($"saber {command}: {ErrorMessages.Describe(e)}");
            return 1;
        }
        catch (Exception e)
        {
            // A bug of ours, not of the input: one line (the tests look for it), the stack trace only with --verbose.
            stderr.WriteLine($"saber {command}: internal error ({e.GetType().Name}): {e.Message} (please report it; --verbose shows where)");
            if (verbose) stderr.WriteLine(e);
            return 1;
        }
    }
}
