using System.Text.Json;
using Saber.Cli;
using Saber.Cli.Checkers;

namespace Saber.Tests.Cli;

/// <summary>
/// models/sudoku/test.jsonl, made by tools/sudoku_task.py (Python), checked by code that shares nothing with it: every
/// puzzle has exactly one solution (a solution counter written here), the file's answer is that solution and passes
/// the eval's <see cref="SudokuChecker"/>, and the givens fall in the difficulty's stated range.
/// </summary>
public class SudokuHeldOutSetTests
{
    private static string SetPath => Path.Combine(AppContext.BaseDirectory, "models", "sudoku", "test.jsonl");

    /// <summary>The difficulties' ranges of givens, as tools/sudoku_task.py and models/sudoku/README.md state them.</summary>
    private static readonly Dictionary<string, (int Low, int High)> Givens = new()
    {
        ["easy"] = (40, 45), ["medium"] = (32, 37), ["hard"] = (26, 30),
    };

    [Test]
    public void EveryPuzzleHasOneSolutionWhichIsTheAnswerAndTheGivensMatchItsDifficulty()
    {
        TaskFile file = TaskFile.Read(SetPath);
        Assert.That(file.Problems, Has.Count.EqualTo(300));
        Assert.That(file.GenerationLength, Is.EqualTo(81));
        foreach (EvalProblem problem in file.Problems)
        {
            Assert.That(problem.Checker, Is.InstanceOf<SudokuChecker>(), problem.Location);
            int[] grid = problem.Prompt[..81].Select(c => c == '.' ? 0 : c - '0').ToArray();
            var (low, high) = Givens[problem.Difficulty!];
            Assert.That(grid.Count(v => v != 0), Is.InRange(low, high), $"{problem.Location}: givens of a {problem.Difficulty} puzzle");
            int[]? solution = null;
            Assert.That(CountSolutions(grid, ref solution), Is.EqualTo(1), $"{problem.Location}: solutions");
            Assert.That(string.Concat(solution!), Is.EqualTo(problem.Answer), $"{problem.Location}: the one solution is the answer");
            Assert.That(problem.Checker.Accepts(problem.Answer), Is.True, problem.Location);
        }
        Assert.That(file.Problems.GroupBy(p => p.Difficulty).ToDictionary(g => g.Key!, g => g.Count()),
            Is.EquivalentTo(new Dictionary<string, int> { ["easy"] = 100, ["medium"] = 100, ["hard"] = 100 }));
        Assert.That(file.Problems.Select(p => p.Prompt).Distinct().Count(), Is.EqualTo(300), "no puzzle twice");
    }

    /// <summary>
    /// Solutions of <paramref name="grid"/> (0: blank), counted up to two by depth-first search that fills the blank with
    /// the fewest allowed digits first (plain cell order can take minutes on a hard puzzle).
    /// </summary>
    private static int CountSolutions(int[] grid, ref int[]? first)
    {
        int best = -1, bestCount = 10;
        for (int cell = 0; cell < 81 && bestCount > 1; cell++)
        {
            if (grid[cell] != 0) continue;
            int allowed = Enumerable.Range(1, 9).Count(d => Allowed(grid, cell / 9, cell % 9, d));
            if (allowed < bestCount) (best, bestCount) = (cell, allowed);
        }
        if (best < 0)
        {
            first ??= (int[])grid.Clone();
            return 1;
        }
        int count = 0;
        for (int digit = 1; digit <= 9 && count < 2; digit++)
        {
            if (!Allowed(grid, best / 9, best % 9, digit)) continue;
            grid[best] = digit;
            count += CountSolutions(grid, ref first);
            grid[best] = 0;
        }
        return count;
    }

    private static bool Allowed(int[] grid, int row, int column, int digit)
    {
        for (int k = 0; k < 9; k++)
        {
            if (grid[row * 9 + k] == digit || grid[k * 9 + column] == digit) return false;
            int r = row / 3 * 3 + k / 3, c = column / 3 * 3 + k % 3;
            if (grid[r * 9 + c] == digit) return false;
        }
        return true;
    }
}
