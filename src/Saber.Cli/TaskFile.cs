using System.Text.Json;
using Saber.Cli.Checkers;

namespace Saber.Cli;

/// <summary>
/// One problem of a task file: the prompt, the answer (for the <c>regex</c> checker, the pattern), the checker that
/// scores a decoded text, the difficulty it is grouped under (null: none), and where it was read (<c>FILE:LINE</c>, for errors).
/// </summary>
internal sealed record EvalProblem(string Prompt, string Answer, AnswerChecker Checker, string? Difficulty = null, string Location = "")
{
    /// <summary>An <c>exact</c> problem.</summary>
    public EvalProblem(string prompt, string answer) : this(prompt, answer, new ExactChecker(answer)) { }
}

/// <summary>
/// A task file (<c>saber eval --tasks FILE</c>): JSON lines, one problem per line, blank lines skipped. Each line is an
/// object with the strings <c>prompt</c> and <c>answer</c>, and optionally <c>checker</c> (<c>exact</c>, the default;
/// <c>regex</c>; <c>sudoku</c>), <c>difficulty</c> (a string) and <c>gen_length</c> (a positive integer: the positions
/// to generate, the same on every line that gives it). Other fields are ignored.
/// </summary>
/// <param name="Problems">The problems in file order.</param>
/// <param name="GenerationLength">The <c>gen_length</c> the lines give; null when none does.</param>
internal sealed record TaskFile(List<EvalProblem> Problems, int? GenerationLength)
{
    /// <summary>Reads and checks the whole file: every checker is built (a regex compiled, a Sudoku prompt read) here, before anything is decoded.</summary>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="InvalidDataException">The first bad line, as <c>FILE:LINE: what is wrong</c>; or a file without problems.</exception>
    public static TaskFile Read(string path)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"The task file {path} does not exist.", path);
        var problems = new List<EvalProblem>();
        int? generationLength = null;
        int lineOfGenerationLength = 0;
        int number = 0;
        foreach (string line in File.ReadLines(path))
        {
            number++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            string location = $"{path}:{number}";
            JsonElement root;
            try
            {
                using JsonDocument json = JsonDocument.Parse(line);
                root = json.RootElement.Clone();
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"{location}: not JSON ({e.Message}).", e);
            }
            if (root.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{location}: expected a JSON object; got {Kind(root)}.");
            string? prompt = String(root, "prompt", location);
            string? answer = String(root, "answer", location);
            if (prompt is null || answer is null)
                throw new InvalidDataException($"{location}: expected an object with the strings \"prompt\" and \"answer\"; " +
                    $"\"{(prompt is null ? "prompt" : "answer")}\" is missing.");
            string checkerName = String(root, "checker", location) ?? "exact";
            string? difficulty = String(root, "difficulty", location);
            if (root.TryGetProperty("gen_length", out JsonElement g))
            {
                if (g.ValueKind != JsonValueKind.Number || !g.TryGetInt32(out int value) || value < 1 || value > DecodeOptions.MaxGenerationLength)
                    throw new InvalidDataException($"{location}: \"gen_length\" must be an integer in [1, {DecodeOptions.MaxGenerationLength}]; got {g.GetRawText()}.");
                if (generationLength is int earlier && earlier != value)
                    throw new InvalidDataException($"{location}: \"gen_length\" is {value}, but line {lineOfGenerationLength} gave {earlier}; " +
                        "a task file has one generation length.");
                if (generationLength is null) lineOfGenerationLength = number;
                generationLength = value;
            }
            AnswerChecker checker;
            try
            {
                checker = AnswerChecker.Create(checkerName, prompt, answer);
            }
            catch (ArgumentException e)
            {
                throw new InvalidDataException($"{location}: {ErrorMessages.Describe(e).TrimEnd('.')}.", e);
            }
            problems.Add(new EvalProblem(prompt, answer, checker, difficulty, location));
        }
        if (problems.Count == 0)
            throw new InvalidDataException($"{path} holds no problems.");
        return new TaskFile(problems, generationLength);
    }

    /// <summary>The string field <paramref name="name"/>; null when absent; an error naming the line when it is not a string.</summary>
    private static string? String(JsonElement root, string name, string location)
    {
        if (!root.TryGetProperty(name, out JsonElement value)) return null;
        if (value.ValueKind != JsonValueKind.String)
            throw new InvalidDataException($"{location}: \"{name}\" must be a string; got {Kind(value)}.");
        return value.GetString();
    }

    private static string Kind(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.Number => $"the number {value.GetRawText()}",
        JsonValueKind.True or JsonValueKind.False => value.GetRawText(),
        JsonValueKind.Null => "null",
        _ => value.GetRawText(),
    };
}
