#!/usr/bin/env python3
"""Paired comparison of decoding strategies on a task file: which problems each strategy gets right, not only how many.

    python3 bench/paired_eval.py --model models/sudoku [--tasks FILE] [--saber DLL] \
        "saber reference=--strategy saber" "low-confidence S=66=--strategy low-confidence --steps 66" ...

Each argument is LABEL=OPTIONS (the label ends at the "=" before the first --option): `saber generate` runs every prompt of the task file with those options (greedy, G = the
file's gen_length, one block, --json), and a problem counts as right when the decoded text equals the file's answer
(the task files this is for, models/sudoku and models/addition, have one answer per problem: exact match is their
checker's verdict). Prints each strategy's accuracy, per difficulty, and mean NFE, then for each pair: the problems only
the first gets right, those only the second gets right, and the exact two-sided McNemar p-value (the binomial test on
those discordant problems), which says whether a difference in accuracy is more than the luck of which problems fell
near a tie. bench/results/eval-sudoku-2026-12-07.md shows what it is for.
"""
import argparse
import itertools
import json
import math
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(saber, model, prompts, gen_length, options):
    command = ["dotnet", saber, "generate", "--model", model, "--gen-length", str(gen_length), "--block-length",
               str(gen_length), "--no-progress", "--json"] + options.split() + prompts
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit("saber generate %s: exit %d: %s" % (options, result.returncode, result.stderr.strip()[-2000:]))
    out = result.stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    if len(rows) != len(prompts):
        raise SystemExit("saber generate answered %d of %d prompts (%s)" % (len(rows), len(prompts), options))
    return rows


def mcnemar(first, second):
    only_first = sum(1 for a, b in zip(first, second) if a and not b)
    only_second = sum(1 for a, b in zip(first, second) if b and not a)
    n, k = only_first + only_second, min(only_first, only_second)
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n) if n else 1.0
    return only_first, only_second, p


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--tasks", help="default: MODEL/test.jsonl")
    parser.add_argument("--saber", default=os.path.join(ROOT, "src/Saber.Cli/bin/Release/net10.0/saber.dll"))
    parser.add_argument("strategies", nargs="+", metavar="LABEL=OPTIONS")
    args = parser.parse_args()
    problems = [json.loads(line) for line in open(args.tasks or os.path.join(args.model, "test.jsonl")) if line.strip()]
    gen_length = problems[0].get("gen_length", 16)
    prompts = [p["prompt"] for p in problems]
    difficulties = list(dict.fromkeys(p.get("difficulty") for p in problems if p.get("difficulty")))

    right = {}
    for spec in args.strategies:
        # The label ends at the "=" before the first option, so that labels like "S=66" keep theirs.
        match = re.match(r"^(.+?)=(--.*)$", spec)
        if match is None:
            raise SystemExit("%r: expected LABEL=OPTIONS, the options starting with --" % spec)
        label, options = match.groups()
        rows = run(args.saber, args.model, prompts, gen_length, options)
        right[label] = [row["text"] == p["answer"] for row, p in zip(rows, problems)]
        by = ", ".join("%s %d" % (d, sum(r for r, p in zip(right[label], problems) if p.get("difficulty") == d))
                       for d in difficulties)
        print("%s: %d/%d right%s, mean NFE %.2f" % (label, sum(right[label]), len(problems), " (" + by + ")" if by else "",
                                                    sum(row["nfe"] for row in rows) / len(rows)))
        sys.stdout.flush()
    for a, b in itertools.combinations(right, 2):
        only_a, only_b, p = mcnemar(right[a], right[b])
        print("%s vs %s: only the first right %d, only the second %d, McNemar p = %.3g" % (a, b, only_a, only_b, p))


if __name__ == "__main__":
    main()
