using System.Globalization;
using Microsoft.Extensions.Logging;
using Saber.Denoisers;

namespace Saber.Cli;

/// <summary>
/// The main job on the embedded default model. Until a trained model ships, that is the synthetic
/// denoiser over a character vocabulary: it "knows" one completion, favours planted wrong
/// characters while the text after them is still masked, and grows more confident as the canvas fills.
/// </summary>
internal static class DemoCommand
{
    public const string Usage =
        "usage: saber demo [--no-color]\n" +
        "Shows Saber filling the canvas step by step (green: committed this step, red: re-masked),\n" +
        "then compares Saber, low-confidence (S = G) and threshold 0.9 on the same model.\n" +
        "The model is a synthetic stand-in (no trained model ships yet) with planted early mistakes.";

    internal const string Prompt = "def fibonacci(n):\n";
    internal const string Completion = "    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n";

    /// <summary>Wrong characters the model favours until the text after them appears: (index in the completion, character).</summary>
    internal static readonly (int Index, char Token)[] PlantedMistakes = [(10, '>'), (12, '1'), (26, 'm'), (40, 'f')];

    public static SyntheticTask Task()
    {
        var traps = PlantedMistakes.Select(t => new Trap(t.Index, CharVocabulary.Encode(t.Token))).ToArray();
        return new SyntheticTask(CharVocabulary.Size, CharVocabulary.MaskId, [CharVocabulary.Encode(Prompt)], [CharVocabulary.Encode(Completion)], [traps]);
    }

    public static async Task<int> RunAsync(string[] argv, TextWriter stdout, ILoggerFactory logging, CancellationToken cancellationToken)
    {
        var args = new Arguments(argv, new HashSet<string> { "--no-color" });
        bool color = !args.Flag("--no-color") && stdout == Console.Out && !Console.IsOutputRedirected;
        args.RejectUnknown();

        SyntheticTask task = Task();
        int g = Completion.Length;
        var sampler = new CpuSampler(logging.CreateLogger<CpuSampler>());
        int[] prompt = task.Prompts[0];

        stdout.WriteLine($"Saber on a synthetic model: prompt {Show(Prompt)}, {g} positions to fill.");
        stdout.WriteLine(color ? "(green: committed this step, red: re-masked this step, _ : mask)" : "([x]: committed this step, {x}: re-masked this step, _ : mask)");
        var saber = new DecodeOptions { GenerationLength = g, Strategy = new SaberStrategy() };
        await foreach (DecodeStepUpdate update in sampler.DecodeStepsAsync(new SyntheticDenoiser(task), [prompt], saber, cancellationToken))
        {
            SequenceStep s = update.Sequences[0];
            string tau = s.Trace.Tau is double t ? t.ToString("F3", CultureInfo.InvariantCulture) : "-";
            stdout.WriteLine($"step {update.Step,3}  tau {tau}  +{s.Trace.Committed.Count,-2} -{s.Trace.Remasked.Count,-2} {Render(s, prompt.Length, color)}");
        }

        stdout.WriteLine();
        stdout.WriteLine($"{"strategy",-34} {"NFE",5} {"tokens recovered",17} {"planted mistakes left",22}");
        DecodingStrategy[] strategies = [new SaberStrategy(), new SaberStrategy(Backtracking: false), new LowConfidenceStrategy(g), new ThresholdStrategy(0.9f)];
        foreach (DecodingStrategy strategy in strategies)
        {
            var options = new DecodeOptions { GenerationLength = g, Strategy = strategy };
            SequenceResult r = (await sampler.DecodeAsync(new SyntheticDenoiser(task), [prompt], options, cancellationToken)).Sequences[0];
            int recovered = g - task.Mistakes(0, r.Tokens);
            stdout.WriteLine($"{StrategyArguments.Describe(strategy),-34} {r.Nfe,5} {$"{recovered}/{g}",17} {$"{task.TrapsLeft(0, r.Tokens)}/{PlantedMistakes.Length}",22}");
        }
        return 0;
    }

    private static string Show(string text) => text.Replace("\n", "⏎");

    private static string Render(SequenceStep step, int promptLength, bool color)
    {
        var committed = step.Trace.Committed.Select(c => c.Position).ToHashSet();
        var remasked = step.Trace.Remasked.Select(r => r.Position).ToHashSet();
        var line = new System.Text.StringBuilder();
        for (int pos = promptLength; pos < step.Canvas.Length; pos++)
        {
            string ch = Show(CharVocabulary.Decode(step.Canvas[pos]).ToString());
            if (remasked.Contains(pos))
                line.Append(color ? $"\e[41m{ch}\e[0m" : $"{{{ch}}}");
            else if (committed.Contains(pos))
                line.Append(color ? $"\e[42m{ch}\e[0m" : $"[{ch}]");
            else
                line.Append(ch);
        }
        return line.ToString();
    }
}
