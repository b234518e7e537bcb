#!/usr/bin/env python3
"""The addition task of models/addition: problems, the held-out test set, the exact check.

A problem is the sum of two 8-digit numbers, written with leading zeros so that digits line up:

    prompt  "04721593+38812047="      answer  "043533640"      (always 9 digits)

Why this task (models/addition/README.md says more): the answer can be checked exactly; a small masked
diffusion LM becomes confident on it; and decoding order matters. An answer digit depends on the carry
out of the digits to its right. Where those digits sum to 8 or less (no carry) or to 10 or more (a
carry whatever comes in), the carry is known locally and the model can be sure of the digit at once;
where they sum to exactly 9 the carry passes through, and the digit is only certain once the digit to
its right is decoded. So the easy digits come first and the carry chains are resolved right to left, the
"easy cells first, hard cells late" of Sudoku. Half of the problems have their digit pairs forced to sum
to 9 with probability 1/2 per pair, so long carry chains are common, not 1 in 10^k.

    python3 tools/addition_task.py --test-set models/addition/test.jsonl [--count 1000] [--seed 20261130]

writes the held-out set in saber eval's task-file format, one JSON object per line:
{"prompt": "...", "answer": "...", "checker": "exact"}. The training script draws its problems from another
seed and skips every problem of the test set.
"""
import argparse
import json
import random

DIGITS = 8
ANSWER_LENGTH = DIGITS + 1
TEST_SEED = 20261130


def problem(rng):
    """One (prompt, answer) pair drawn from rng."""
    chain_probability = rng.choice((0.0, 0.5))
    a, b = [], []
    for _ in range(DIGITS):
        x = rng.randrange(10)
        y = 9 - x if rng.random() < chain_probability else rng.randrange(10)
        a.append(x)
        b.append(y)
    left, right = int("".join(map(str, a))), int("".join(map(str, b)))
    return "%0*d+%0*d=" % (DIGITS, left, DIGITS, right), "%0*d" % (ANSWER_LENGTH, left + right)


def check(prompt, text):
    """True when text (the decoded answer, cut at the end-of-text) is the exact sum the prompt asks for."""
    left, right = prompt.rstrip("=").split("+")
    return text == "%0*d" % (ANSWER_LENGTH, int(left) + int(right))


def test_set(count=1000, seed=TEST_SEED):
    rng = random.Random(seed)
    seen, problems = set(), []
    while len(problems) < count:
        prompt, answer = problem(rng)
        if prompt not in seen:
            seen.add(prompt)
            problems.append((prompt, answer))
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test-set", required=True, help="where to write the held-out problems (JSON lines)")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=TEST_SEED)
    args = parser.parse_args()
    problems = test_set(args.count, args.seed)
    for prompt, answer in problems:
        assert check(prompt, answer)
    with open(args.test_set, "w") as f:
        for prompt, answer in problems:
            f.write(json.dumps({"prompt": prompt, "answer": answer, "checker": "exact"}) + "\n")
    print("wrote %d problems to %s (seed %d)" % (len(problems), args.test_set, args.seed))


if __name__ == "__main__":
    main()
