using System.Text.RegularExpressions;
using Saber.Cli.Checkers;

namespace Saber.Tests.Cli;

/// <summary>
/// The checkers of <c>saber eval</c>'s task files on texts made here: the Sudoku check against a known puzzle and its
/// solution and grids broken in one way each (tools/sudoku_task.py's check gives the same verdicts on them), the
/// regex's whole-text anchoring and timeout.
/// </summary>
public class CheckerTests
{
    // A well-known puzzle and its unique solution (the example of tools/sudoku_task.py's docstring).
    private const string Puzzle = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79=";
    private const string Solution = "534678912672195348198342567859761423426853791713924856961537284287419635345286179";
    private static readonly string NoGivens = new string('.', 81) + "=";

    private static string Swap(string grid, int i, int j)
    {
        char[] cells = grid.ToCharArray();
        (cells[i], cells[j]) = (cells[j], cells[i]);
        return new string(cells);
    }

    private static string SwapRows(string grid, int a, int b)
    {
        string[] rows = Enumerable.Range(0, 9).Select(r => grid.Substring(r * 9, 9)).ToArray();
        (rows[a], rows[b]) = (rows[b], rows[a]);
        return string.Concat(rows);
    }

    [Test]
    public void SudokuAcceptsTheSolutionAndAnyValidGridThatKeepsTheGivens()
    {
        Assert.That(new SudokuChecker(Puzzle, Solution).Accepts(Solution), Is.True);
        // Digits 1 and 2 swapped everywhere: still a valid grid, so a prompt without givens accepts it.
        string relabelled = Solution.Replace('1', 'x').Replace('2', '1').Replace('x', '2');
        Assert.That(new SudokuChecker(NoGivens, Solution).Accepts(relabelled), Is.True);
    }

    [Test]
    public void SudokuRejectsAValidGridThatChangesAGiven()
    {
        // The same relabelled grid is valid, but the puzzle gives 1s (row 2: "6..195...") that it turns into 2s.
        string relabelled = Solution.Replace('1', 'x').Replace('2', '1').Replace('x', '2');
        Assert.That(new SudokuChecker(Puzzle, Solution).Accepts(relabelled), Is.False);
    }

    [TestCase(0, TestName = "{m}(wrong length: 80 digits)")]
    [TestCase(1, TestName = "{m}(wrong length: 82 digits)")]
    [TestCase(2, TestName = "{m}(a 0)")]
    [TestCase(3, TestName = "{m}(a blank)")]
    [TestCase(4, TestName = "{m}(empty)")]
    public void SudokuRejectsATextThatIsNotAGrid(int kind)
    {
        string text = kind switch
        {
            0 => Solution[..80],
            1 => Solution + "9",
            2 => "0" + Solution[1..],
            3 => "." + Solution[1..],
            _ => "",
        };
        Assert.That(new SudokuChecker(NoGivens, Solution).Accepts(text), Is.False);
    }

    // Each grid breaks one kind of unit only, by construction: two cells of a column swapped within a band (rows break,
    // the column and boxes keep their digits), two cells of a row within a stack (columns break), rows 2 and 3 swapped
    // across bands (boxes break; rows and columns keep their digits).
    [TestCase("row", TestName = "{m}(a duplicate in rows only)")]
    [TestCase("column", TestName = "{m}(a duplicate in columns only)")]
    [TestCase("box", TestName = "{m}(a duplicate in boxes only)")]
    public void SudokuRejectsADuplicateInOneKindOfUnit(string unit)
    {
        string grid = unit switch
        {
            "row" => Swap(Solution, 0, 9),
            "column" => Swap(Solution, 0, 1),
            _ => SwapRows(Solution, 2, 3),
        };
        Assert.That(new SudokuChecker(NoGivens, Solution).Accepts(grid), Is.False);
    }

    [TestCase("53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79", TestName = "{m}(no '=')")]
    [TestCase("53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..7=", TestName = "{m}(80 cells)")]
    [TestCase("03..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79=", TestName = "{m}(a 0)")]
    [TestCase("What is 2+2?", TestName = "{m}(not a grid)")]
    public void SudokuRefusesAPromptThatIsNotASudokuPrompt(string prompt)
    {
        var e = Assert.Throws<ArgumentException>(() => new SudokuChecker(prompt, Solution));
        Assert.That(e!.Message, Does.StartWith("a Sudoku prompt is 81 cells of '1'-'9' or '.', then '='"));
    }

    [Test]
    public void SudokuRefusesAnAnswerThatDoesNotSolveThePrompt() =>
        Assert.Throws<ArgumentException>(() => new SudokuChecker(Puzzle, Swap(Solution, 0, 9)));

    [TestCase(@"\d+", "123", true)]
    [TestCase(@"\d+", "123x", false, TestName = "{m}(text after the match)")]
    [TestCase(@"\d+", "x123", false, TestName = "{m}(text before the match)")]
    [TestCase("a|ab", "ab", true, TestName = "{m}(the whole text, not the leftmost alternative)")]
    [TestCase("a|ab", "b", false)]
    [TestCase("(?i)yes", "YES", true, TestName = "{m}(inline options)")]
    [TestCase(".*", "", true, TestName = "{m}(an empty text)")]
    public void RegexMatchesTheWholeText(string pattern, string text, bool accepted) =>
        Assert.That(new RegexChecker(pattern).Accepts(text), Is.EqualTo(accepted));

    [TestCase("(b", "does not compile")]
    [TestCase("a)|(b", "does not compile", TestName = "{m}(an unbalanced ')' that would compile once wrapped)")]
    [TestCase("(?x)a # comment", "does not compile once anchored", TestName = "{m}(a (?x) comment that swallows the anchor)")]
    public void RegexRefusesAPatternThatDoesNotCompile(string pattern, string message)
    {
        var e = Assert.Throws<ArgumentException>(() => new RegexChecker(pattern));
        Assert.That(e!.Message, Does.Contain(message).And.Contain(pattern));
    }

    [Test]
    public void ARegexThatBacktracksCatastrophicallyTimesOut()
    {
        var checker = new RegexChecker("(a|aa)+b", TimeSpan.FromMilliseconds(20));
        Assert.Throws<RegexMatchTimeoutException>(() => checker.Accepts(new string('a', 60)));
    }

    [Test]
    public void ExactComparesCharacterForCharacter()
    {
        var checker = AnswerChecker.Create("exact", "1+1=", "2");
        Assert.That(checker.Accepts("2"), Is.True);
        Assert.That(checker.Accepts("2 "), Is.False);
        Assert.That(checker.Accepts(""), Is.False);
    }

    [Test]
    public void AnUnknownCheckerNamesTheKnownOnes()
    {
        var e = Assert.Throws<ArgumentException>(() => AnswerChecker.Create("fuzzy", "p", "a"));
        Assert.That(e!.Message, Does.Contain("unknown checker \"fuzzy\" (known: exact, regex, sudoku)"));
    }
}
