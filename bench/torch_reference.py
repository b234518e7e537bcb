#!/usr/bin/env python3
"""One Saber step (reference variant, n = 2, mu = 8) written the way a PyTorch user writes it:
full softmax, gather, boolean masks, top-k, and host synchronisations through .item(). Timed with
CUDA events on the shapes saber_bench uses, from the initial state each run, rotating logits
buffers larger than L2, median of many runs. The side-by-side ratio with saber_bench comes from
running both in one session (bench/run_gpu.sh).

    python3 bench/torch_reference.py [--runs N] [--quick] [--json out.json]
"""
import argparse
import json
import statistics

import torch

INF = float("inf")


def saber_step(logits, canvas, state, prompt_length, mask_id, n=2, mu=8):
    decoded, f, ever_committed, previous = state["decoded"], state["f"], state["ever"], state["previous"]
    probs = torch.softmax(logits[:, prompt_length:, :].float(), dim=-1)  # [B, G, V], materialised
    scores = probs.clone()
    scores[..., mask_id] = -1.0  # never predict the mask
    confidence, prediction = scores.max(dim=-1)
    delta = confidence - previous
    delta[~torch.isfinite(delta)] = INF
    previous.copy_(confidence)
    for b in range(canvas.shape[0]):
        committed = ever_committed[b]
        tau = f[b][committed].mean().item() if committed.any().item() else 1.0
        undecoded = ~decoded[b]
        draft = undecoded & (confidence[b] > tau)
        if draft.sum().item() < n:
            k = min(n, int(undecoded.sum().item()))
            ranked = confidence[b].masked_fill(decoded[b], -INF)
            draft = torch.zeros_like(draft)
            draft[ranked.topk(k).indices] = True
        region = canvas[b, prompt_length:]
        region[draft] = prediction[b][draft]
        decoded[b] |= draft
        f[b][draft] = confidence[b][draft]
        ever_committed[b] |= draft
        if (~decoded[b]).sum().item() == 0:
            continue
        drafted = int(draft.sum().item())
        m = min(max(n // 2, -(-drafted // mu)), drafted - 1)
        if m > 0:
            candidates = delta[b].masked_fill(~decoded[b], INF)
            chosen = candidates.topk(m, largest=False).indices
            region[chosen] = mask_id
            decoded[b][chosen] = False


def fresh_state(batch, generation, device):
    return {
        "decoded": torch.zeros(batch, generation, dtype=torch.bool, device=device),
        "f": torch.zeros(batch, generation, device=device),
        "ever": torch.zeros(batch, generation, dtype=torch.bool, device=device),
        "previous": torch.zeros(batch, generation, device=device),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="only G = 256, batch 1")
    parser.add_argument("--json", help="write the rows as JSON here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("torch_reference: no CUDA device")
    device = torch.device("cuda")
    l2 = torch.cuda.get_device_properties(device).L2_cache_size
    print(f"GPU: {torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}\n")
    print("| V | G | batch | dtype | torch step us |")
    print("|---|---|---|---|---|")
    rows = []
    for vocabulary in (126464, 151936):
        for generation in (32, 256, 1024):
            for batch in (1, 8):
                for dtype in (torch.bfloat16, torch.float32):
                    if args.quick and (generation != 256 or batch != 1):
                        continue
                    shape_bytes = batch * generation * vocabulary * (2 if dtype == torch.bfloat16 else 4)
                    buffers = max(2, 2 * l2 // shape_bytes + 1)
                    logits = [torch.rand(batch, generation, vocabulary, device=device).mul_(16).sub_(8).to(dtype) for _ in range(buffers)]
                    mask_id = vocabulary - 1
                    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    samples = []
                    for i in range(args.runs + 5):
                        canvas = torch.full((batch, generation), mask_id, dtype=torch.long, device=device)
                        state = fresh_state(batch, generation, device)
                        torch.cuda.synchronize()
                        start.record()
                        saber_step(logits[i % buffers], canvas, state, 0, mask_id)
                        stop.record()
                        stop.synchronize()
                        if i >= 5:
                            samples.append(start.elapsed_time(stop) * 1e3)
                    us = statistics.median(samples)
                    name = "bf16" if dtype == torch.bfloat16 else "f32"
                    print(f"| {vocabulary} | {generation} | {batch} | {name} | {us:.1f} |", flush=True)
                    rows.append({"vocabulary": vocabulary, "generation": generation, "batch": batch, "dtype": name, "torch_step_us": us})
                    del logits
                    torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as out:
            json.dump(rows, out, indent=1)


if __name__ == "__main__":
    main()
