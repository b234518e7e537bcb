#!/usr/bin/env python3
"""Trains models/tiny: the LLaDA-architecture model of make_tiny_model.py, masked-diffusion objective.

Corpus: the Python standard library's own source (the `.py` files of the interpreter running this
script; test packages, the codec tables of encodings/ and the help prose of pydoc_data/ left out),
as characters of tokenizer.json; every 20th file is held out for
the validation loss. Objective (LLaDA's): per sequence t ~ U(0, 1], each token masked with
probability t, cross-entropy on the masked tokens weighted by 1/t, averaged over all tokens.

    python3 tools/train_tiny_model.py [--steps 3000] [--indent tabs|spaces] [--device auto] [--out models/tiny]

Needs PyTorch: the GPU machine's, or on Debian `apt-get install python3-torch` (CPU; run it with
/usr/bin/python3). The trained weights go through make_tiny_model.build_onnx, so the ONNX graph and
the literal reference forward pass are the ones the engine tests already check. The same seed,
device and thread count give the same weights.
"""
import argparse
import math
import os
import sys
import sysconfig
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_model as tiny  # noqa: E402  (the architecture's one definition: sizes, vocabulary, graph)

V, D, H, HD, FF = len(tiny.VOCABULARY), tiny.D_MODEL, tiny.HEADS, tiny.HEAD_DIM, tiny.D_FF
MASK_ID = V - 1
EOS_ID = tiny.VOCABULARY.index("<|eos|>")


# Test packages, installed packages, generated codec tables and help prose: not the code to learn.
NOT_CODE = ("test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "encodings", "pydoc_data")


def corpus_files():
    root = sysconfig.get_paths()["stdlib"]
    files = []
    for directory, subdirectories, names in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories
                                   if d not in NOT_CODE)
        files += [os.path.join(directory, n) for n in sorted(names) if n.endswith(".py")]
    return root, files


def tab_indented(text):
    """Leading indentation as one tab per 4 columns (tabs anywhere are first expanded to 4-column stops):
    a character model otherwise spends nearly a third of its characters on spaces and, decoding
    greedily, falls into runs of them."""
    lines = []
    for line in text.expandtabs(4).split("\n"):
        body = line.lstrip(" ")
        columns = len(line) - len(body)
        lines.append("\t" * (columns // 4) + " " * (columns % 4) + body)
    return "\n".join(lines)


def encode_files(files, tabs):
    ids = []
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        ids += tiny.encode(tab_indented(text) if tabs else text) + [EOS_ID]
    return torch.tensor(ids, dtype=torch.long)


class TinyModel(torch.nn.Module):
    """The ONNX graph of make_tiny_model.build_onnx, parameter for parameter (x @ W layout: [in, out])."""

    def __init__(self):
        super().__init__()
        p = torch.nn.ParameterDict()

        def normal(*shape, std):
            return torch.nn.Parameter(torch.randn(*shape) * std)

        p["embed"] = normal(V, D, std=1.0)
        residual = 1.0 / math.sqrt(2 * tiny.LAYERS)   # GPT-2's scaling of the projections into the residual
        for layer in range(tiny.LAYERS):
            q = "layer%d_" % layer
            p[q + "attn_norm"] = torch.nn.Parameter(torch.ones(D))
            for name in ("wq", "wk", "wv"):
                p[q + name] = normal(D, D, std=D ** -0.5)
            p[q + "wo"] = normal(D, D, std=D ** -0.5 * residual)
            p[q + "ffn_norm"] = torch.nn.Parameter(torch.ones(D))
            p[q + "w_gate"] = normal(D, FF, std=D ** -0.5)
            p[q + "w_up"] = normal(D, FF, std=D ** -0.5)
            p[q + "w_down"] = normal(FF, D, std=FF ** -0.5 * residual)
        p["final_norm"] = torch.nn.Parameter(torch.ones(D))
        p["lm_head"] = normal(D, V, std=D ** -0.5)
        self.p = p
        # make_tiny_model's rotary tables, the ones the ONNX graph holds: [max positions, HD].
        cos, sin = tiny.rotary_tables()
        self.register_buffer("rope_cos", torch.tensor(cos).view(tiny.MAX_POSITIONS, HD), persistent=False)
        self.register_buffer("rope_sin", torch.tensor(sin).view(tiny.MAX_POSITIONS, HD), persistent=False)

    @staticmethod
    def rms_norm(x, weight):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + tiny.EPSILON) * weight

    def forward(self, ids):
        b, s = ids.shape
        cos, sin = self.rope_cos[:s], self.rope_sin[:s]
        p = self.p

        def heads(x):
            return x.view(b, s, H, HD).transpose(1, 2)

        def rotate(x):
            x1, x2 = x[..., :HD // 2], x[..., HD // 2:]
            return x * cos + torch.cat((-x2, x1), -1) * sin

        x = p["embed"][ids]
        for layer in range(tiny.LAYERS):
            q = "layer%d_" % layer
            h = self.rms_norm(x, p[q + "attn_norm"])
            qs, ks, vs = rotate(heads(h @ p[q + "wq"])), rotate(heads(h @ p[q + "wk"])), heads(h @ p[q + "wv"])
            attended = torch.softmax(qs @ ks.transpose(-1, -2) / math.sqrt(HD), -1) @ vs   # bidirectional
            x = x + attended.transpose(1, 2).reshape(b, s, D) @ p[q + "wo"]
            h = self.rms_norm(x, p[q + "ffn_norm"])
            x = x + (F.silu(h @ p[q + "w_gate"]) * (h @ p[q + "w_up"])) @ p[q + "w_down"]
        return self.rms_norm(x, p["final_norm"]) @ p["lm_head"]

    def onnx_weights(self):
        """The parameters as make_tiny_model.build_onnx names them, as lists of float32 values."""
        return {name.replace("_", ".", 1) if name.startswith("layer") else name: t.detach().cpu().float().flatten().tolist()
                for name, t in self.p.items()}


def check_against_literal_forward(model):
    """The trained function is the exported one: PyTorch's logits against make_tiny_model's literal forward pass."""
    ids = tiny.encode("def f(x):") + [MASK_ID] * 5
    with torch.no_grad():
        logits = model(torch.tensor([ids], device=next(model.parameters()).device))[0].double().cpu()
    difference = (logits - torch.tensor(tiny.reference_forward(model.onnx_weights(), ids), dtype=torch.float64)).abs().max().item()
    if difference > 1e-3:
        raise SystemExit("PyTorch's forward pass differs from the literal one by %g: the graphs disagree" % difference)
    print("PyTorch vs the literal forward pass: largest logit difference %.2g" % difference)


def diffusion_loss(model, x0, generator):
    """LLaDA's objective: mask with probability t ~ U(eps, 1] per sequence, CE on masked tokens / t."""
    b, s = x0.shape
    t = (1 - 1e-3) * torch.rand(b, 1, generator=generator, device=x0.device) + 1e-3
    masked = torch.rand(b, s, generator=generator, device=x0.device) < t
    logits = model(torch.where(masked, torch.full_like(x0, MASK_ID), x0))
    ce = F.cross_entropy(logits.reshape(-1, V), x0.reshape(-1), reduction="none").view(b, s)
    return (ce * masked / t).sum() / (b * s)


def batch(data, size, length, generator):
    starts = torch.randint(0, len(data) - length, (size,), generator=generator)
    return torch.stack([data[i:i + length] for i in starts.tolist()])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "models", "tiny"))
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lengths", default="32,256", help="each step's sequence length is drawn from [lo, hi]")
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--indent", choices=("tabs", "spaces"), default="tabs", help="the corpus's leading indentation")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    args = parser.parse_args()
    lo, hi = (int(v) for v in args.lengths.split(","))
    if not 1 <= lo <= hi <= tiny.MAX_POSITIONS:
        parser.error("--lengths %s: need 1 <= lo <= hi <= %d" % (args.lengths, tiny.MAX_POSITIONS))
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else "cpu" if args.device == "auto" else args.device)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(args.seed)
    root, files = corpus_files()
    train = encode_files([f for i, f in enumerate(files) if i % 20 != 0], args.indent == "tabs")
    held_out = encode_files([f for i, f in enumerate(files) if i % 20 == 0], args.indent == "tabs")
    print("corpus: %s, %d files, %d training / %d held-out characters; device %s, %d threads"
          % (root, len(files), len(train), len(held_out), device, torch.get_num_threads()), flush=True)

    model = TinyModel().to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, betas=(0.9, 0.95), weight_decay=0.01)
    warmup = max(1, args.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, args.steps) / args.steps)))
    generator = torch.Generator().manual_seed(args.seed)
    validation = torch.Generator().manual_seed(args.seed + 1)
    validation_batches = [batch(held_out, 16, 128, validation).to(device) for _ in range(8)]

    def validation_loss():
        model.eval()
        with torch.no_grad():
            g = torch.Generator(device=device).manual_seed(args.seed + 2)
            loss = sum(diffusion_loss(model, x, g).item() for x in validation_batches) / len(validation_batches)
        model.train()
        return loss

    start = time.time()
    initial = validation_loss()
    print("step 0: held-out loss %.3f" % initial, flush=True)
    for step in range(1, args.steps + 1):
        length = int(torch.randint(lo, hi + 1, (1,), generator=generator))
        x0 = batch(train, args.batch, length, generator).to(device)
        loss = diffusion_loss(model, x0, torch.Generator(device=device).manual_seed(args.seed * 7919 + step))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        if step % 100 == 0 or step == args.steps:
            print("step %d: training loss %.3f, held-out loss %.3f, %.0f s" % (step, loss.item(), validation_loss(), time.time() - start), flush=True)
    final = validation_loss()
    check_against_literal_forward(model)

    description = ("trained: %d steps of batch %d, lengths %d..%d, AdamW lr %g, seed %d, indentation as %s, on %s; held-out loss %.3f -> %.3f"
                   % (args.steps, args.batch, lo, hi, args.learning_rate, args.seed, args.indent, device.type, initial, final))
    tiny.write_model(args.out, model.onnx_weights(), description, args.seed)
    print("%s in %.0f s" % (description, time.time() - start))


if __name__ == "__main__":
    main()
