using Saber.Cli;

namespace Saber.Tests.Cli;

/// <summary>The demo's Sudoku grid: puzzle and decoded grid side by side, boxes ruled, wrong cells named.</summary>
public class SudokuGridTests
{
    private const string Puzzle = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79=";
    private const string Solution = "534678912672195348198342567859761423426853791713924856961537284287419635345286179";

    private static string[] Lines(string text) => text.Split('\n').Select(l => l.TrimEnd('\r')).ToArray();

    [Test]
    public void ARightGridIsDrawnBesideThePuzzleWithItsBoxesRuled()
    {
        string[] lines = Lines(SudokuGrid.Render(Puzzle, Solution, Solution, color: false));
        Assert.That(lines, Has.Length.EqualTo(1 + 9 + 2 + 1), "a header, nine rows, two rules, the verdict");
        Assert.That(lines[0], Does.StartWith("puzzle").And.Contain("decoded"));
        Assert.That(lines[1], Is.EqualTo("5 3 . | . 7 . | . . .   5 3 4 | 6 7 8 | 9 1 2"));
        Assert.That(lines[4], Is.EqualTo("------+-------+------   ------+-------+------"));
        Assert.That(lines[11], Is.EqualTo(". . . | . 8 . | . 7 9   3 4 5 | 2 8 6 | 1 7 9"));
        Assert.That(lines[^1], Is.EqualTo("every decoded cell is the answer's"));
        // Every digit of the decoded grid, read back from the right-hand halves of the rows, is the solution.
        string readBack = string.Concat(lines[1..^1].Where(l => !l.StartsWith("---")).Select(l => l[24..].Replace(" ", "").Replace("|", "")));
        Assert.That(readBack, Is.EqualTo(Solution));
    }

    [Test]
    public void CellsThatDifferFromTheAnswerAreNamedByRowAndColumn()
    {
        // Cells r1c3 (4) and r9c9 (9) changed.
        char[] cells = Solution.ToCharArray();
        cells[2] = '7';
        cells[80] = '1';
        string[] lines = Lines(SudokuGrid.Render(Puzzle, new string(cells), Solution, color: false));
        Assert.That(lines[^1], Is.EqualTo("2 decoded cell(s) differ from the answer: r1c3 (7, not 4), r9c9 (1, not 9)"));
    }

    [Test]
    public void AShortTextShowsQuestionMarksForTheMissingCells()
    {
        string[] lines = Lines(SudokuGrid.Render(Puzzle, Solution[..79], Solution, color: false));
        Assert.That(lines[11], Does.EndWith("3 4 5 | 2 8 6 | 1 ? ?"));
        Assert.That(lines[^1], Does.StartWith("2 decoded cell(s) differ").And.Contain("r9c8 (?, not 7)"));
    }

    [Test]
    public void WithColourTheWrongCellsAreRedAndNoListFollows()
    {
        char[] cells = Solution.ToCharArray();
        cells[0] = '9';
        string[] lines = Lines(SudokuGrid.Render(Puzzle, new string(cells), Solution, color: true));
        Assert.That(lines, Has.Length.EqualTo(1 + 9 + 2));
        Assert.That(lines[1], Does.Contain("\e[41m9\e[0m 3 4"));
    }

    [Test]
    public void APuzzleOrAnswerOfTheWrongSizeIsRefused()
    {
        Assert.That(() => SudokuGrid.Render("123=", Solution, Solution, color: false), Throws.ArgumentException.With.Message.Contains("81 cells"));
        Assert.That(() => SudokuGrid.Render(Puzzle, Solution, Solution[..80], color: false), Throws.ArgumentException.With.Message.Contains("80"));
    }
}
