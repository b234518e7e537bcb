using System.Text;
using Saber.Cli.Checkers;

namespace Saber.Cli;

/// <summary>
/// A Sudoku puzzle and a decoded grid side by side, 3x3 boxes ruled, for the demo: a step line shows the 81 cells in a
/// row, which hides the grid's structure. Decoded cells that differ from the file's answer are red (or listed below the
/// grid without colour); every puzzle of the shipped set has one solution, so a differing cell is a wrong one.
/// </summary>
internal static class SudokuGrid
{
    /// <summary>
    /// Nine lines of <paramref name="puzzle"/> ('1'-'9' or '.', 81 cells) beside <paramref name="decoded"/>, then, without
    /// colour, a line naming the cells that differ from <paramref name="answer"/> (row and column from 1) or saying none does.
    /// A decoded text shorter than 81 characters shows '?' for the cells it lacks.
    /// </summary>
    public static string Render(string puzzle, string decoded, string answer, bool color)
    {
        const int n = SudokuChecker.Cells;
        if (puzzle.Length < n || answer.Length != n)
            throw new ArgumentException($"a Sudoku puzzle and answer have 81 cells; got {puzzle.Length} and {answer.Length}");
        string cells = decoded.Length >= n ? decoded[..n] : decoded.PadRight(n, '?');
        var wrong = new List<string>();
        var text = new StringBuilder();
        text.AppendLine($"{"puzzle",-21}   {"decoded"}");
        for (int row = 0; row < 9; row++)
        {
            if (row is 3 or 6) text.AppendLine("------+-------+------   ------+-------+------");
            var left = new StringBuilder();
            var right = new StringBuilder();
            for (int column = 0; column < 9; column++)
            {
                if (column is 3 or 6) { left.Append("| "); right.Append("| "); }
                int i = row * 9 + column;
                left.Append(puzzle[i]).Append(' ');
                bool differs = cells[i] != answer[i];
                if (differs) wrong.Add($"r{row + 1}c{column + 1} ({cells[i]}, not {answer[i]})");
                right.Append(differs && color ? $"\e[41m{cells[i]}\e[0m" : cells[i].ToString()).Append(' ');
            }
            text.Append(left.ToString().TrimEnd()).Append("   ").AppendLine(right.ToString().TrimEnd());
        }
        if (!color)
            text.AppendLine(wrong.Count == 0 ? "every decoded cell is the answer's" : $"{wrong.Count} decoded cell(s) differ from the answer: {string.Join(", ", wrong)}");
        return text.ToString().TrimEnd('\n', '\r');
    }
}
