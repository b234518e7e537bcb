using System.Text.Json;

namespace Saber.Onnx.Tests;

/// <summary>
/// The measure of the shipped task models' regression guards (<see cref="TaskModelTests"/>):
/// the first problems of a model's held-out set (its <c>test.jsonl</c>) decoded greedily with one strategy, G positions
/// in one block, on the CPU sampler; exact-match accuracy against the file's answers and mean NFE. Exact match is the
/// right check for both sets: an addition has one sum, and every puzzle of the Sudoku set has one solution
/// (<c>SudokuHeldOutSetTests</c> checks that with a solver of its own).
/// </summary>
internal static class TaskModelGuard
{
    /// <summary>A shipped model's directory as the tests see it (copied beside the test assembly).</summary>
    public static string Directory(string model) => Path.Combine(AppContext.BaseDirectory, "models", model);

    /// <summary>The first <paramref name="count"/> problems (prompt, answer) of the model's held-out set.</summary>
    public static (string Prompt, string Answer)[] Problems(string model, int count) =>
        File.ReadLines(Path.Combine(Directory(model), "test.jsonl"))
            .Take(count)
            .Select(line => JsonDocument.Parse(line).RootElement)
            .Select(o => (o.GetProperty("prompt").GetString()!, o.GetProperty("answer").GetString()!))
            .ToArray();

    /// <summary>Accuracy and mean NFE of <paramref name="strategy"/> on the first <paramref name="count"/> problems.</summary>
    public static async Task<(double Accuracy, double MeanNfe)> EvaluateAsync(string model, int count, int g, DecodingStrategy strategy)
    {
        (string Prompt, string Answer)[] problems = Problems(model, count);
        using LocalModel local = LocalModel.Open(Directory(model));
        var options = new DecodeOptions { GenerationLength = g, Strategy = strategy };
        ReadOnlyMemory<int>[] prompts = problems.Select(p => (ReadOnlyMemory<int>)local.Tokenizer.Encode(p.Prompt)).ToArray();
        DecodeResult result = await new CpuSampler().DecodeAsync(local.Denoiser, prompts, options);
        int correct = result.Sequences.Where((s, i) => local.Tokenizer.Decode(s.Tokens) == problems[i].Answer).Count();
        return ((double)correct / problems.Length, result.Sequences.Average(s => s.Nfe));
    }
}
