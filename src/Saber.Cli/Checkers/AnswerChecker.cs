using System.Text.RegularExpressions;

namespace Saber.Cli.Checkers;

/// <summary>
/// Whether one problem's decoded text (cut at the first end-of-text) is right: one instance per problem of a task file,
/// made from its <c>checker</c>, <c>prompt</c> and <c>answer</c> fields (<see cref="Create"/>).
/// </summary>
internal abstract class AnswerChecker
{
    /// <summary>The names a task file's <c>checker</c> field may take.</summary>
    public static readonly IReadOnlyList<string> Names = ["exact", "regex", "sudoku"];

    /// <summary>True when <paramref name="text"/> answers the problem.</summary>
    public abstract bool Accepts(string text);

    /// <summary>The checker <paramref name="name"/> for one problem.</summary>
    /// <exception cref="ArgumentException">An unknown name, or a prompt or answer the checker cannot use; the message says why.</exception>
    public static AnswerChecker Create(string name, string prompt, string answer) => name switch
    {
        "exact" => new ExactChecker(answer),
        "regex" => new RegexChecker(answer),
        "sudoku" => new SudokuChecker(prompt, answer),
        _ => throw new ArgumentException($"unknown checker \"{name}\" (known: {string.Join(", ", Names)})", nameof(name)),
    };
}

/// <summary>The text equals the answer, character for character.</summary>
internal sealed class ExactChecker(string answer) : AnswerChecker
{
    /// <inheritdoc />
    public override bool Accepts(string text) => text == answer;
}

/// <summary>
/// The whole text matches a .NET regular expression (the pattern runs as <c>\A(?:pattern)\z</c>: a pattern that
/// should allow more text says so with <c>.*</c>). Matching stops after <see cref="Timeout"/>, so a pattern that
/// backtracks catastrophically fails with <see cref="RegexMatchTimeoutException"/> instead of hanging the evaluation.
/// </summary>
internal sealed class RegexChecker : AnswerChecker
{
    /// <summary>How long one match may run.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(1);

    private readonly Regex regex;

    /// <exception cref="ArgumentException">The pattern does not compile; the message is .NET's reason.</exception>
    public RegexChecker(string pattern, TimeSpan? timeout = null)
    {
        Pattern = pattern;
        Timeout = timeout ?? DefaultTimeout;
        // Compiled alone first: a pattern with an unbalanced ")" (say "a)|(b") would otherwise compile once wrapped and
        // mean something else.
        try
        {
            _ = new Regex(pattern, RegexOptions.CultureInvariant);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"the regex \"{pattern}\" does not compile: {e.Message}", e);
        }
        try
        {
            regex = new Regex($@"\A(?:{pattern})\z", RegexOptions.CultureInvariant, Timeout);
        }
        catch (ArgumentException e)
        {
            // A pattern that compiles alone fails here when a (?x) comment runs to its end: it swallows the closing ")\z".
            throw new ArgumentException($"the regex \"{pattern}\" does not compile once anchored as \\A(?:pattern)\\z ({e.Message}); " +
                "end a (?x) comment with a newline", e);
        }
    }

    /// <summary>The pattern as the task file gives it (before anchoring).</summary>
    public string Pattern { get; }

    /// <summary>How long one match may run before it throws.</summary>
    public TimeSpan Timeout { get; }

    /// <inheritdoc />
    /// <exception cref="RegexMatchTimeoutException">The match ran longer than <see cref="Timeout"/>.</exception>
    public override bool Accepts(string text) => regex.IsMatch(text);
}
