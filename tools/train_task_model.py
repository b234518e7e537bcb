#!/usr/bin/env python3
"""Trains a task model: models/tiny's architecture on the addition task (models/addition) or Sudoku (models/sudoku).

LLaDA's supervised objective: the prompt is never masked; per sequence t ~ U(0.001, 1], each response
position (the answer, then end-of-text up to the canvas length) is masked with probability t;
cross-entropy on the masked positions weighted by 1/t, averaged over the response positions. The canvas
length G (answer plus end-of-text padding) is drawn per step from --canvas, so the model fills any G in
that range (Sudoku: exactly the 81 cells, no padding).

    /usr/bin/python3 tools/train_task_model.py [--task addition|sudoku] [--steps N] [--checkpoint PATH]
                                               [--max-minutes M] [--out DIR]

Tasks: addition (tools/addition_task.py; defaults --steps 4000 --batch 128 --canvas 10,24, out models/addition)
and sudoku (tools/sudoku_task.py; defaults --steps 6000 --batch 64 --canvas 81,81, out models/sudoku). Sudoku
puzzles are drawn from a pool of uniquely solvable puzzles generated from the seed on the first run (cached beside
the checkpoint), each under a random symmetry of the grid; held-out puzzles (models/sudoku/test.jsonl, another
seed) are never trained on.

Resumable: every --save-every steps (and when --max-minutes runs out) the model, optimiser, schedule,
step and random states go to --checkpoint; run the same command again to go on from there. The ONNX
files are written only when the last step is done (or with --export-checkpoint). Needs PyTorch (Debian:
apt-get install python3-torch libopenblas0-pthread). The same seed and thread count give the same weights,
resumed or not. --confidence-report prints how the checkpoint's first-call confidences are spread (how many
are exactly 1.0, which pins Saber's threshold; bench/results/eval-addition-2026-12-01.md).
"""
import argparse
import json
import math
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import addition_task  # noqa: E402
import sudoku_task  # noqa: E402
import make_tiny_model as tiny  # noqa: E402
import train_tiny_model as training  # noqa: E402  (the model in PyTorch and the export check)

MASK_ID, EOS_ID, V = training.MASK_ID, training.EOS_ID, training.V


class Addition:
    """8-digit addition (addition_task.py): problems drawn fresh each step, test-set prompts skipped."""
    name, module = "addition", addition_task
    steps, batch, canvas, gauge_canvas = 4000, 128, "10,24", 16
    prompt_length = 2 * addition_task.DIGITS + 2

    def __init__(self, seed, checkpoint):
        self.held_out = addition_task.test_set()

    def draw(self, rng):
        return addition_task.problem(rng)

    def check(self, prompt, text):
        return addition_task.check(prompt, text)

    def test_rows(self):
        return [{"prompt": p, "answer": a, "checker": "exact"} for p, a in self.held_out]


class Sudoku:
    """Sudoku (sudoku_task.py): puzzles from a pool of uniquely solvable ones made from the seed (cached as JSON lines
    beside the checkpoint), each under a random symmetry; the held-out set is models/sudoku/test.jsonl's seed."""
    name, module = "sudoku", sudoku_task
    steps, batch, canvas, gauge_canvas = 6000, 64, "81,81", 81
    prompt_length = sudoku_task.CELLS + 1
    pool_size = 6000

    def __init__(self, seed, checkpoint):
        held_out = sudoku_task.test_set()
        self.held_out = [(p, a) for p, a, _ in held_out]
        self.difficulty = {p: d for p, _, d in held_out}
        pool_path = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), "pool-%d-%d.jsonl" % (seed, self.pool_size))
        if not os.path.exists(pool_path):
            started = time.time()
            pool = sudoku_task.draw(random.Random(seed), self.pool_size)
            os.makedirs(os.path.dirname(pool_path), exist_ok=True)
            sudoku_task.write(pool_path + ".partial", pool)
            os.replace(pool_path + ".partial", pool_path)
            print("made %d training puzzles in %.0f s: %s" % (len(pool), time.time() - started, pool_path), flush=True)
        excluded = {p for p, _ in self.held_out}
        self.pool = [(p, a) for p, a, _ in sudoku_task.read_test_set(pool_path) if p not in excluded]

    def draw(self, rng):
        prompt, answer = self.pool[rng.randrange(len(self.pool))]
        return sudoku_task.transform(prompt, answer, rng)

    def check(self, prompt, text):
        return sudoku_task.check(prompt, text)

    def test_rows(self):
        return [{"prompt": p, "answer": a, "checker": "sudoku", "difficulty": self.difficulty[p], "gen_length": sudoku_task.ANSWER_LENGTH}
                for p, a in self.held_out]


TASKS = {"addition": Addition, "sudoku": Sudoku}


def encode_batch(problems, canvas):
    """[b, prompt + canvas] ids: prompt, answer, end-of-text up to the canvas length; and where the response starts."""
    rows = [tiny.encode(p) + tiny.encode(a) + [EOS_ID] * (canvas - len(a)) for p, a in problems]
    return torch.tensor(rows, dtype=torch.long), len(problems[0][0])


def response_loss(model, x0, start, generator):
    b, s = x0.shape
    t = (1 - 1e-3) * torch.rand(b, 1, generator=generator) + 1e-3
    masked = torch.rand(b, s, generator=generator) < t
    masked[:, :start] = False
    logits = model(torch.where(masked, torch.full_like(x0, MASK_ID), x0))
    ce = F.cross_entropy(logits.reshape(-1, V), x0.reshape(-1), reduction="none").view(b, s)
    return (ce * masked / t).sum() / (b * (s - start))


def confidence_and_prediction(model, x, start):
    """SABER_SPEC section 2 in float32: each response position's largest probability but the mask id's, and its token."""
    return torch.softmax(model(x)[:, start:].float(), -1)[..., :MASK_ID].max(-1)


def greedy_accuracy(task, model, problems, canvas, parallel):
    """Exact-match accuracy of a quick greedy decode: every position from one call (parallel), or one position per
    call, the most confident first (LLaDA's low-confidence with S = G). A training-time gauge only; saber eval is the
    measurement."""
    x, start = encode_batch(problems, canvas)
    x[:, start:] = MASK_ID
    with torch.no_grad():
        for _ in range(1 if parallel else canvas):
            confidence, prediction = confidence_and_prediction(model, x, start)
            masked = x[:, start:] == MASK_ID
            if parallel:
                x[:, start:] = torch.where(masked, prediction, x[:, start:])
                break
            best = torch.where(masked, confidence, torch.full_like(confidence, -1.0)).argmax(-1)
            rows = torch.arange(len(problems))
            x[rows, start + best] = torch.where(masked[rows, best], prediction[rows, best], x[rows, start + best])
    correct = 0
    for (prompt, _), row in zip(problems, x[:, start:].tolist()):
        text = "".join(tiny.VOCABULARY[i] for i in (row[:row.index(EOS_ID)] if EOS_ID in row else row))
        correct += task.check(prompt, text)
    return correct / len(problems)


def confidence_report(model, problems, canvas):
    """The confidence of every position of a fully masked canvas in the first call: how many are exactly 1.0,
    which pins Saber's threshold at 1."""
    model.eval()
    x, start = encode_batch(problems, canvas)
    x[:, start:] = MASK_ID
    with torch.no_grad():
        confidence = confidence_and_prediction(model, x, start).values
    share = lambda condition: condition.float().mean().item()  # noqa: E731
    return ("first call, %d problems x %d masked positions: exactly 1.0 %.3f, >= 0.9 %.3f, < 0.5 %.3f, smallest %.3g"
            % (len(problems), canvas, share(confidence == 1.0), share(confidence >= 0.9), share(confidence < 0.5), confidence.min().item()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="addition")
    parser.add_argument("--out", help="default: models/TASK")
    parser.add_argument("--checkpoint", help="default: build/TASK/checkpoint.pt")
    parser.add_argument("--steps", type=int, help="default: the task's (addition 4000, sudoku 6000)")
    parser.add_argument("--batch", type=int, help="default: the task's (addition 128, sudoku 64)")
    parser.add_argument("--canvas", help="each step's canvas length G (answer + end-of-text) is drawn from [lo, hi]; default: the task's")
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save-every", type=int, default=250)
    parser.add_argument("--max-minutes", type=float, default=0, help="save and stop after this long (0: run to the end)")
    parser.add_argument("--export-checkpoint", action="store_true",
                        help="write the ONNX files from the checkpoint as it is (before the last step: the description says so) and stop")
    parser.add_argument("--confidence-report", action="store_true",
                        help="print how the checkpoint's first-call confidences on the held-out set are spread (all masked) and stop")
    args = parser.parse_args()
    kind = TASKS[args.task]
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    args.out = args.out or os.path.join(root, "models", kind.name)
    args.checkpoint = args.checkpoint or os.path.join(root, "build", kind.name, "checkpoint.pt")
    args.steps = args.steps or kind.steps
    args.batch = args.batch or kind.batch
    args.canvas = args.canvas or kind.canvas
    lo, hi = (int(v) for v in args.canvas.split(","))
    answer_length = kind.module.ANSWER_LENGTH
    if not answer_length <= lo <= hi or hi + kind.prompt_length > tiny.MAX_POSITIONS:
        parser.error("--canvas %s: need %d <= lo <= hi and the sequence within %d positions" % (args.canvas, answer_length, tiny.MAX_POSITIONS))
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    task = kind(args.seed, args.checkpoint)
    held_out = task.held_out
    excluded = {p for p, _ in held_out}
    validation = held_out[:256]
    gauge = kind.gauge_canvas
    model = training.TinyModel()
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, betas=(0.9, 0.95), weight_decay=0.01)
    warmup = max(1, args.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, args.steps) / args.steps)))
    problems = random.Random(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    step, seconds = 0, 0.0
    if os.path.exists(args.checkpoint):
        state = torch.load(args.checkpoint)
        if state["steps"] != args.steps or state["seed"] != args.seed:
            raise SystemExit("%s was made with --steps %d --seed %d; remove it or pass those" % (args.checkpoint, state["steps"], state["seed"]))
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        problems.setstate(state["problems"])
        generator.set_state(state["generator"])
        step, seconds = state["step"], state["seconds"]
        print("resumed from %s at step %d (%.0f s of training so far)" % (args.checkpoint, step, seconds), flush=True)

    def save():
        os.makedirs(os.path.dirname(os.path.abspath(args.checkpoint)), exist_ok=True)
        temporary = args.checkpoint + ".partial"
        torch.save({"model": model.state_dict(), "optimiser": optimiser.state_dict(), "schedule": schedule.state_dict(),
                    "problems": problems.getstate(), "generator": generator.get_state(), "step": step,
                    "seconds": seconds, "steps": args.steps, "seed": args.seed}, temporary)
        os.replace(temporary, args.checkpoint)

    def report():
        model.eval()
        with torch.no_grad():
            x0, start = encode_batch(validation, gauge)
            loss = response_loss(model, x0, start, torch.Generator().manual_seed(args.seed + 1)).item()
        parallel = greedy_accuracy(task, model, validation, gauge, parallel=True)
        sequential = greedy_accuracy(task, model, validation[:64 if gauge <= 16 else 32], gauge, parallel=False)
        model.train()
        return "held-out loss %.4f, exact: one call %.3f, one position per call %.3f" % (loss, parallel, sequential)

    if args.confidence_report:
        if step == 0:
            raise SystemExit("no checkpoint at %s to report on" % args.checkpoint)
        print(confidence_report(model, held_out, gauge))
        return

    if args.export_checkpoint:
        if step == 0:
            raise SystemExit("no checkpoint at %s to export" % args.checkpoint)
        export(model, args, lo, hi, seconds, report(), task, step)
        return

    started = time.time() - seconds
    deadline = time.time() + args.max_minutes * 60 if args.max_minutes else None
    print("%d threads; step %d of %d: %s" % (torch.get_num_threads(), step, args.steps, report()), flush=True)
    while step < args.steps:
        canvas = problems.randint(lo, hi)
        drawn = []
        while len(drawn) < args.batch:
            p = task.draw(problems)
            if p[0] not in excluded:
                drawn.append(p)
        x0, start = encode_batch(drawn, canvas)
        loss = response_loss(model, x0, start, generator)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        step += 1
        seconds = time.time() - started
        if step % 250 == 0 or step == args.steps:
            print("step %d: training loss %.4f, %s, %.0f s" % (step, loss.item(), report(), seconds), flush=True)
        if step % args.save_every == 0 or step == args.steps or (deadline and time.time() > deadline):
            save()
            if deadline and time.time() > deadline and step < args.steps:
                print("stopped at step %d after --max-minutes; run again to resume" % step, flush=True)
                return

    export(model, args, lo, hi, seconds, report(), task, step)


def export(model, args, lo, hi, seconds, final, task, step):
    training.check_against_literal_forward(model)
    schedule = "%d steps" % args.steps if step == args.steps else "step %d of a %d-step schedule (exported before its end)" % (step, args.steps)
    description = ("%s task: %s of batch %d, canvas %d..%d, AdamW lr %g, seed %d, %d threads, %.0f s; %s"
                   % (task.name, schedule, args.batch, lo, hi, args.learning_rate, args.seed, torch.get_num_threads(), seconds, final))
    tiny.write_model(args.out, model.onnx_weights(), description, args.seed)
    with open(os.path.join(args.out, "test.jsonl"), "w") as f:
        for row in task.test_rows():
            f.write(json.dumps(row) + "\n")
    print(description)


if __name__ == "__main__":
    main()
