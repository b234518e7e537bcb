namespace Saber.Cli.Checkers;

/// <summary>
/// The Sudoku task's check (tools/sudoku_task.py makes the puzzles): the prompt is the 81 cells of a 9x9 grid, row by
/// row, '1'-'9' for a given and '.' for a blank, then '='; the text is right when it is a complete valid grid (81 digits
/// '1'-'9'; each row, column and 3x3 box holds every digit once) that keeps every given. Any solution counts, not only
/// the file's answer.
/// </summary>
internal sealed class SudokuChecker : AnswerChecker
{
    /// <summary>Cells of the grid.</summary>
    public const int Cells = 81;

    /// <summary>The givens, row by row: '1'-'9', or '.' for a blank.</summary>
    private readonly string givens;

    /// <exception cref="ArgumentException">The prompt is not a Sudoku prompt, or the answer does not solve it.</exception>
    public SudokuChecker(string prompt, string answer)
    {
        if (prompt.Length != Cells + 1 || prompt[^1] != '=' || prompt.AsSpan(0, Cells).ContainsAnyExcept(".123456789"))
            throw new ArgumentException($"a Sudoku prompt is 81 cells of '1'-'9' or '.', then '='; got \"{prompt}\" ({prompt.Length} characters)", nameof(prompt));
        givens = prompt[..Cells];
        // The file's answer is not what the checker compares against, but one that fails the check means a broken line.
        if (!Accepts(answer))
            throw new ArgumentException($"the answer \"{answer}\" is not a solved grid that keeps the prompt's givens", nameof(answer));
    }

    /// <inheritdoc />
    public override bool Accepts(string text)
    {
        if (text.Length != Cells || text.AsSpan().ContainsAnyExcept("123456789")) return false;
        for (int i = 0; i < Cells; i++)
            if (givens[i] != '.' && givens[i] != text[i]) return false;
        // One bit per digit seen, per row, column and box: a digit seen twice in a unit means one is missing.
        Span<int> rows = stackalloc int[9], columns = stackalloc int[9], boxes = stackalloc int[9];
        for (int i = 0; i < Cells; i++)
        {
            int bit = 1 << (text[i] - '0');
            int row = i / 9, column = i % 9, box = row / 3 * 3 + column / 3;
            if (((rows[row] | columns[column] | boxes[box]) & bit) != 0) return false;
            rows[row] |= bit;
            columns[column] |= bit;
            boxes[box] |= bit;
        }
        return true;
    }
}
