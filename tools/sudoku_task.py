#!/usr/bin/env python3
"""The Sudoku task of models/sudoku: puzzles with one solution, the held-out set, the exact check.

A puzzle is the 81 cells of a 9x9 grid, row by row, '.' for a blank; the answer is the solved grid:

    prompt  "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79="
    answer  "534678912672195348198342567859761423426853791713924856961537284287419635345286179"

Why this task (models/sudoku/README.md says more): the answer is checked exactly (a valid grid that keeps
the givens); decoding order decides it (a cell forced by the givens can be filled at once, others only once
their row, column and box fill up, so wrong early commits are exposed by later constraints: what Saber's
re-masking is for); and confidences are graded while the grid fills.

Every puzzle has exactly one solution (checked by a solver that counts to two). Difficulty is the number of
givens: easy 40-45, medium 32-37, hard 26-30 (fewer givens, longer chains of deduction).

    python3 tools/sudoku_task.py --test-set models/sudoku/test.jsonl [--count 300] [--seed 20261207]
    python3 tools/sudoku_task.py --pool build/sudoku/pool.jsonl --count 3000 [--seed 1]

--test-set writes the held-out set in saber eval's task-file format, one JSON object per line:
{"prompt", "answer", "checker": "sudoku", "difficulty", "gen_length": 81} (gen_length: saber eval decodes 81
positions without a --gen-length). --pool writes training puzzles (the trainer draws
from such a pool and applies symmetries that keep a puzzle's solution unique: digit relabelling, row and
column swaps within a band or stack, band and stack swaps, transposition).
"""
import argparse
import json
import random
import sys

CELLS = 81
ANSWER_LENGTH = CELLS
TEST_SEED = 20261207
DIFFICULTIES = {"easy": (40, 45), "medium": (32, 37), "hard": (26, 30)}

# Each cell's row, column and box, and the 20 cells it sees.
ROW = [i // 9 for i in range(CELLS)]
COLUMN = [i % 9 for i in range(CELLS)]
BOX = [(i // 27) * 3 + (i % 9) // 3 for i in range(CELLS)]
PEERS = [sorted({j for j in range(CELLS) if j != i and (ROW[i] == ROW[j] or COLUMN[i] == COLUMN[j] or BOX[i] == BOX[j])})
         for i in range(CELLS)]
ALL = 0x3FE   # bits 1..9


def count_solutions(grid, limit=2, first=None):
    """How many solutions grid (a list of 81 ints, 0 blank) has, counting up to limit; the first one found goes
    into first (a list) when given. Depth-first search on the cell with the fewest candidates."""
    grid = list(grid)
    rows, columns, boxes = [0] * 9, [0] * 9, [0] * 9
    for i, v in enumerate(grid):
        if v:
            bit = 1 << v
            if rows[ROW[i]] & bit or columns[COLUMN[i]] & bit or boxes[BOX[i]] & bit:
                return 0
            rows[ROW[i]] |= bit
            columns[COLUMN[i]] |= bit
            boxes[BOX[i]] |= bit
    blanks = [i for i, v in enumerate(grid) if not v]
    found = 0

    def search():
        nonlocal found
        best, best_candidates, best_count = -1, 0, 10
        for i in blanks:
            if grid[i]:
                continue
            candidates = ALL & ~(rows[ROW[i]] | columns[COLUMN[i]] | boxes[BOX[i]])
            count = bin(candidates).count("1")
            if count < best_count:
                best, best_candidates, best_count = i, candidates, count
                if count <= 1:
                    break
        if best < 0:
            found += 1
            if first is not None and found == 1:
                first[:] = grid
            return found >= limit
        if best_count == 0:
            return False
        r, c, b = ROW[best], COLUMN[best], BOX[best]
        candidates = best_candidates
        while candidates:
            bit = candidates & -candidates
            candidates ^= bit
            grid[best] = bit.bit_length() - 1
            rows[r] |= bit
            columns[c] |= bit
            boxes[b] |= bit
            done = search()
            rows[r] ^= bit
            columns[c] ^= bit
            boxes[b] ^= bit
            grid[best] = 0
            if done:
                return True
        return False

    search()
    return found


def random_solution(rng):
    """A solved grid drawn by filling cells in order with shuffled digits (depth-first, backtracking)."""
    grid = [0] * CELLS

    def fill(i):
        if i == CELLS:
            return True
        used = {grid[j] for j in PEERS[i]}
        digits = [d for d in range(1, 10) if d not in used]
        rng.shuffle(digits)
        for d in digits:
            grid[i] = d
            if fill(i + 1):
                return True
        grid[i] = 0
        return False

    fill(0)
    return grid


def puzzle(rng, difficulty):
    """(prompt, answer, difficulty): blanks dug from a random solution in random order, each kept only while the
    puzzle stays uniquely solvable, until the difficulty's number of givens is reached (drawn from its range);
    a grid that cannot get that low is drawn again."""
    low, high = DIFFICULTIES[difficulty]
    while True:
        target = rng.randint(low, high)
        solution = random_solution(rng)
        grid = list(solution)
        order = list(range(CELLS))
        rng.shuffle(order)
        givens = CELLS
        for i in order:
            if givens == target:
                break
            kept = grid[i]
            grid[i] = 0
            if count_solutions(grid) == 1:
                givens -= 1
            else:
                grid[i] = kept
        if givens == target:
            return encode(grid), "".join(map(str, solution)), difficulty


def encode(grid):
    return "".join(str(v) if v else "." for v in grid) + "="


def decode_prompt(prompt):
    """The givens of a prompt as 81 ints, 0 blank; ValueError naming what is wrong otherwise."""
    cells = prompt[:-1] if prompt.endswith("=") else prompt
    if len(cells) != CELLS or any(ch not in ".123456789" for ch in cells):
        raise ValueError("a Sudoku prompt is 81 cells of '1'-'9' or '.', then '='; got %r" % prompt)
    return [0 if ch == "." else int(ch) for ch in cells]


def check(prompt, text):
    """True when text (the decoded answer, cut at the end-of-text) is a solved grid that keeps the prompt's givens."""
    if len(text) != CELLS or any(ch not in "123456789" for ch in text):
        return False
    grid = [int(ch) for ch in text]
    if any(g and g != v for g, v in zip(decode_prompt(prompt), grid)):
        return False
    return all(len({grid[j] for j in range(CELLS) if key[j] == k}) == 9 for key in (ROW, COLUMN, BOX) for k in range(9))


def transform(prompt, answer, rng):
    """The same puzzle under a random symmetry of Sudoku (digits relabelled; rows within bands, bands, columns within
    stacks and stacks permuted; maybe transposed): still one solution, the answer transformed alike."""
    digits = list(range(1, 10))
    rng.shuffle(digits)
    relabel = {str(d): str(digits[d - 1]) for d in range(1, 10)}
    relabel["."] = "."

    def lines():
        bands = [0, 1, 2]
        rng.shuffle(bands)
        order = []
        for band in bands:
            within = [0, 1, 2]
            rng.shuffle(within)
            order += [band * 3 + w for w in within]
        return order

    rows, columns = lines(), lines()
    transpose = rng.random() < 0.5

    def apply(cells):
        out = []
        for r in range(9):
            for c in range(9):
                rr, cc = rows[r], columns[c]
                if transpose:
                    rr, cc = cc, rr
                out.append(relabel[cells[rr * 9 + cc]])
        return "".join(out)

    return apply(prompt[:CELLS]) + "=", apply(answer)


def draw(rng, count, difficulties=tuple(DIFFICULTIES)):
    """count puzzles, the difficulties in turn."""
    return [puzzle(rng, difficulties[k % len(difficulties)]) for k in range(count)]


def test_set(count=300, seed=TEST_SEED):
    return draw(random.Random(seed), count)


def read_test_set(path):
    with open(path) as f:
        return [(p["prompt"], p["answer"], p["difficulty"]) for p in map(json.loads, f)]


def write(path, puzzles):
    with open(path, "w") as f:
        for prompt, answer, difficulty in puzzles:
            f.write(json.dumps({"prompt": prompt, "answer": answer, "checker": "sudoku", "difficulty": difficulty,
                                "gen_length": ANSWER_LENGTH}) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test-set", help="write the held-out set here")
    parser.add_argument("--pool", help="write training puzzles here")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--seed", type=int)
    args = parser.parse_args()
    if bool(args.test_set) == bool(args.pool):
        parser.error("give one of --test-set or --pool")
    if args.test_set:
        write(args.test_set, test_set(args.count, args.seed if args.seed is not None else TEST_SEED))
    else:
        seed = args.seed if args.seed is not None else 1
        if seed == TEST_SEED:
            parser.error("--seed %d is the test set's" % TEST_SEED)
        write(args.pool, draw(random.Random(seed), args.count))
    print("wrote %d puzzles" % args.count, file=sys.stderr)


if __name__ == "__main__":
    main()
