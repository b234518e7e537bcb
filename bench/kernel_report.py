#!/usr/bin/env python3
"""Static performance report of the CUDA step kernels for sm_90, measured without a GPU.

    python3 bench/kernel_report.py [--base REV] [--md FILE] [--json FILE] [--date YYYY-MM-DD]

Compiles native/src/kernels/*.cu of the working tree (and, with --base, of another revision checked out with
`git worktree add` into a temporary directory, removed afterwards) with nvcc for sm_90 (-cubin -Xptxas -v, the CMake
build's include paths, defines and -O3), then reports:

  * per kernel instance (templated kernels per dtype and variant): registers, static shared memory, stack and spills
    (ptxas), and the theoretical occupancy on sm_90;
  * for the fast row-pass kernel (row_confidence_kernel): SASS instructions per element of its hot loop, by opcode
    class, and the global vector loads in flight per thread (cuobjdump -sass);
  * kernel launches per step, counted statically from native/src/device/decode.cu and the launchers in kernels/;
  * an ESTIMATE of the fraction of HBM bandwidth the row pass can reach on an H100 SXM and an H200 (a latency-aware
    queueing model of the hot loop and the rows' tails, split rows' finishing included), in the best case (no chunk ranked) and for
    three row shapes, whose ranked chunks the host emulation counts (FastRowPass.RankedChunksByRowShape of the built
    saber_host_tests; without one, the by-shape table says so).

Nothing here runs on a GPU: every time below is an estimate from instruction counts and peak rates.

How the hot loop is found (the heuristic; it must keep working as the kernel changes, and says so when it cannot):
  1. Loops are the backward branches of the kernel's SASS; a loop's body is the address range [target, branch].
     The hot loop is the innermost loop holding 128-bit global loads (LDG.E.128: a loop around another such loop, as
     the work-item loop around the chunk loop, is not) whose body holds the most of them; ties go to the smaller body.
     No such loop: the report says "hot loop not found" (no figure) instead of failing. An instruction that cuobjdump
     prints as its encoding alone (CUDA 11.8 does so for some sm_90 integer min/max) counts as one instruction of class
     integer/move/other, its operands unknown.
  2. One iteration is walked from the loop header to the back-edge along the *steady-state path* of a good row
     (all logits finite, 16-byte aligned, each lane's best two already established). At a conditional branch:
       a. BRA.DIV / BRA.CONV (warp-divergence fallbacks) and branches leaving the loop body: not taken;
       b. a predicate from VOTE.ALL: true (every lane's logits are good); from VOTE.ANY: false;
       c. a predicate from an integer compare with 0x7fffffff (INT_MAX, the "no bad id" sentinel): no bad id;
       d. a branch whose sides hold unpredicated 128-bit loads (the fall-through up to an unconditional jump to the
          target or past it, and the target's side up to that jump's target): the side with more of them (the vector
          path, not the id-by-id fallback, whose loads of the next chunk are predicated);
       e. a predicate not computed inside the loop (a loop-invariant mode flag such as T > 0 in older kernels):
          taken (the optional work it guards is skipped; the report is for greedy, T = 0, decoding);
       f. a predicate from a float or integer compare against a running best: a loop-carried register (the top two,
          the running maximum) or a shared-memory load (the block's floor), directly or through moves, selects,
          min/max and the bit operations of an order key: taken, i.e. the running best is not beaten and its update
          (the warp's ranking of the chunk) is skipped;
       g. otherwise: not taken (fall through: guarded per-element work such as the exp cut-off test runs, and a
          lane-0-only store is issued by the warp).
       h. (ranked path only, before g) a predicate from an integer compare with a kernel parameter loaded in the loop
          (LDC c[0x0][...]): the test whether the ranked chunk holds the mask id, true for one chunk of a row: the
          shorter side up to the reconvergence address of the BSSY before the branch (the general side that also
          handles the held id is the longer one; since the best-only kernels, issue 27, their two sides differ by
          the lanes' ranking, and the fall-through is the rare side).
     A backward branch met inside the body is an inner loop: its body (on the path) is counted once per element of
     the iteration (the elements one vector load holds, times the loads), the assumption of a per-element loop.
  3. Elements per iteration and lane = (128-bit loads on the path) x (16 / sizeof(dtype)), where a load predicated on
     the lane index (lane 0's extra tail-slot load of a row that is not 16-byte aligned) counts as an instruction but
     loads no element. The loads on the path are the chunk's own and those issued ahead for the warp's next chunk
     (together one chunk's). Instructions per element =
     path instructions (NOPs excluded) / elements. The static size of the loop body (every instruction of every
     path, inner loops once) per element is reported beside it for reference; it is not a bound.
  4. Loads in flight per thread = 128-bit loads issued on the path before the first instruction reading any of their
     destination registers. Of them, loads ahead = those no later instruction of the iteration reads (the warp's next
     chunk's, in flight during this chunk's arithmetic; 0 for a kernel that loads each chunk when it starts it).
  5. The ranked path: the same walk with rule f reversed (the running best beaten at every such test: the chunk is
     ranked, or in older kernels every id offered), its instructions per element the other bound. A row pass runs the
     steady path on most chunks of a typical row and the ranked one on the rest: how many depends on the data and, since
     issue 27, on the warp-level floor; the host test FastRowPass.RankedChunksByRowShape counts them for three row
     shapes, and the by-shape table weighs the two paths by its counts. Before issue 27 a warp ran its lanes' offers on
     nearly every chunk of a random row.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile

# ---- machine model (sm_90) ----
SM90 = dict(registers=65536, threads=2048, shared=228 * 1024, blocks=32, reg_granularity=256, reserved_shared=1024,
            warp=32, max_warps=64)
# One clock for both GPUs (issue 27): both boost to 1.98 GHz, but a bandwidth-bound kernel on every SM does not hold
# the maximum boost; 1.755 GHz (the H100 SXM's figure in NVIDIA's peak-rate tables) is the clock every estimate uses.
CLOCK_GHZ = 1.755
GPUS = {  # SMs, HBM bandwidth (bytes/s)
    "h100": dict(name="H100 SXM", sms=132, bandwidth=3.35e12),
    "h200": dict(name="H200", sms=132, bandwidth=4.8e12),
}
SCHEDULERS = 4
# Results per clock per SM of each opcode class's pipe on sm_90 (compute capability 9.0), as we read the CUDA C++
# Programming Guide's throughput table: 128 fp32 add/mul/fma; 64 for 32-bit integer, compare/min/max, logic and shifts
# and fp64; 16 for type conversions and MUFU; 32 for warp shuffles and votes and for load/store instructions. Control
# instructions are counted only against the dispatch limit (one warp instruction per scheduler per clock).
PIPE_RATES = {
    "fp32 FFMA/FMUL/FADD": 128, "fp32 compare/min/max/select": 64, "conversion F2I/I2F/FRND/F2F": 16, "fp64": 64,
    "MUFU": 16, "global load LDG": 32, "other memory": 32, "warp SHFL/VOTE": 32, "integer/move/other": 64,
}
ROWS, VOCAB, G_ROWS = 256, 126464, 1024
DRAM_LATENCY_NS = 600.0  # assumed loaded HBM latency: a warp's wait for the loads of its chunk not issued ahead
CHUNK = 1024  # ids a warp reads per iteration of the hot loop (32 lanes x 32 elements)
ROW_SHAPES = ("random", "peaked", "falling")
TARGETS = {"h100": {"f32": 0.8, "f16": 0.8, "bf16": 0.8}, "h200": {"bf16": 0.7}}  # issue 27, on random rows
DTYPES = {"float": ("f32", 4), "__half": ("f16", 2), "__nv_bfloat16": ("bf16", 2)}


def log(msg: str) -> None:
    print(f"kernel_report: {msg}", file=sys.stderr)


def run(cmd, cwd=None, check=True):
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-4000:]}")
    return p.stdout


def find_tool(name):
    for candidate in (shutil.which(name), f"/usr/local/cuda/bin/{name}", f"/usr/bin/{name}"):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


# ---- compile ----

def nvcc_version(nvcc):
    out = run([nvcc, "--version"])
    m = re.search(r"release (\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0), out.strip().splitlines()[-1]


def compile_tree(root, nvcc, workdir):
    """Compiles native/src/kernels/*.cu of `root` for sm_90; returns [(source, cubin, ptxas_log)]."""
    kernels_dir = os.path.join(root, "native", "src", "kernels")
    sources = sorted(f for f in os.listdir(kernels_dir) if f.endswith(".cu")) if os.path.isdir(kernels_dir) else []
    (major, _), _ = nvcc_version(nvcc)
    flags = ["-O3", "-DNDEBUG", "-std=c++17", "-DSABER_WITH_CUDA=1", "-arch=sm_90", "-cubin", "-Xptxas", "-v",
             "-I" + os.path.join(root, "native", "include"), "-I" + os.path.join(root, "native", "src")]
    if major and major < 12 and shutil.which("clang++-14"):  # as CMakeLists.txt: nvcc 11 rejects g++ 12
        flags += ["-ccbin", shutil.which("clang++-14")]
    results = []
    for source in sources:
        cubin = os.path.join(workdir, source.replace(".cu", ".cubin"))
        try:
            out = run([nvcc, *flags, "-o", cubin, os.path.join(kernels_dir, source)])
        except RuntimeError as e:  # report the others
            log(f"{source} did not compile for sm_90; left out of the report:\n{e}")
            continue
        results.append((source, cubin, out))
    return results


def demangle(names):
    tool = find_tool("cu++filt") or shutil.which("c++filt")
    if not tool or not names:
        return {n: n for n in names}
    p = subprocess.run([tool], input="\n".join(names), stdout=subprocess.PIPE, text=True)
    lines = p.stdout.splitlines()
    return {n: (lines[i] if i < len(lines) else n) for i, n in enumerate(names)}


def parse_ptxas(text):
    """{mangled: {registers, smem, stack, spill_stores, spill_loads}} from -Xptxas -v output (sm_90 entries)."""
    info, current = {}, None
    for line in text.splitlines():
        m = re.search(r"Compiling entry function '([^']+)' for 'sm_90'", line)
        if m:
            current = m.group(1)
            info[current] = dict(registers=0, smem=0, stack=0, spill_stores=0, spill_loads=0)
            continue
        if current is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            info[current].update(stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            info[current]["registers"] = int(m.group(1))
            s = re.search(r"(\d+) bytes smem", line)
            info[current]["smem"] = int(s.group(1)) if s else 0
    return info


def block_sizes(root):
    """Kernel name -> threads per block, from __launch_bounds__(N) and constexpr int N = ... in kernels/*.cu."""
    sizes = {}
    kernels_dir = os.path.join(root, "native", "src", "kernels")
    for f in sorted(os.listdir(kernels_dir)) if os.path.isdir(kernels_dir) else []:
        if not f.endswith((".cu", ".h", ".cuh")):
            continue
        text = open(os.path.join(kernels_dir, f)).read()
        constants = {m.group(1): int(m.group(2)) for m in re.finditer(
            r"constexpr\s+(?:unsigned\s+int|unsigned|int|size_t|u?int(?:32|64)_t)\s+(\w+)\s*=\s*(\d+)\s*;", text)}
        for m in re.finditer(r"__launch_bounds__\(\s*(\w+)[^)]*\)\s*(\w+)\s*\(", text):
            value = m.group(1)
            sizes[m.group(2)] = int(value) if value.isdigit() else constants.get(value)
        # kernel<<<grid, N, ...>>> with a literal or constant block size (possibly static_cast<...>(N))
        for m in re.finditer(r"(\w+)(?:<[^<>;]*>)?\s*<<<(?:[^,()]|\([^()]*\))+,\s*(?:static_cast<\w+>\()?(\w+)\)?\s*[,>]", text):
            value = m.group(2)
            size = int(value) if value.isdigit() else constants.get(value)
            if size and m.group(1) not in sizes:
                sizes[m.group(1)] = size
    return sizes


def occupancy(registers, smem, threads):
    if not threads:
        return None
    warps = math.ceil(threads / SM90["warp"])
    per_warp = math.ceil(max(registers, 1) * SM90["warp"] / SM90["reg_granularity"]) * SM90["reg_granularity"]
    by_registers = (SM90["registers"] // per_warp) // warps
    by_threads = SM90["threads"] // threads
    by_shared = SM90["shared"] // (smem + SM90["reserved_shared"])
    blocks = min(by_registers, by_threads, by_shared, SM90["blocks"])
    limiter = min((by_registers, "registers"), (by_threads, "threads"), (by_shared, "shared memory"), (SM90["blocks"], "blocks"))[1]
    return dict(blocks_per_sm=blocks, warps_per_sm=blocks * warps, occupancy=blocks * warps / SM90["max_warps"], limiter=limiter)


# ---- SASS ----

INS_RE = re.compile(r"^\s*/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
REG_RE = re.compile(r"\bR(\d+)\b")


class Ins:
    __slots__ = ("addr", "text", "guard", "op", "operands")

    def __init__(self, addr, text):
        self.addr, self.text = addr, text
        m = re.match(r"(@!?U?P\w+)\s+(.*)", text)
        self.guard, rest = (m.group(1), m.group(2)) if m else (None, text)
        parts = rest.split(None, 1)
        self.op = parts[0]
        self.operands = [o.strip() for o in parts[1].split(",")] if len(parts) > 1 else []

    @property
    def base(self):
        return self.op.split(".")[0]

    def branch_target(self):
        if self.base not in ("BRA", "JMP", "BRX"):
            return None
        m = re.search(r"0x([0-9a-f]+)\s*$", self.text)
        return int(m.group(1), 16) if m else None

    def pred_dests(self):
        """Predicates written: the leading predicate operands (after a register destination: a carry-out, as in
        IADD3 R1, P0, P1, ...; or first: a compare's or a LOP3's), PT included in the run but not returned."""
        if self.base in ("BRA", "BRX", "JMP", "CALL", "RET", "EXIT", "BSSY", "BSYNC", "WARPSYNC") or not self.operands:
            return []
        k = 1 if re.fullmatch(r"U?R(\d+|Z)(?:\.\w+)*", self.operands[0]) else 0
        out = []
        while k < len(self.operands) and re.fullmatch(r"U?P(\d|T)", self.operands[k]):
            if self.operands[k] not in ("PT", "UPT"):
                out.append(self.operands[k])
            k += 1
        return out

    def width(self):
        if ".128" in self.op:
            return 4
        if ".64" in self.op or "WIDE" in self.op or self.base in ("DADD", "DMUL", "DFMA", "F2F") and ".F64" in self.op:
            return 2
        if self.base in ("DADD", "DMUL", "DFMA") or (self.base in ("F2I", "I2F") and "64" in self.op):
            return 2
        return 1

    def reg_dests(self):
        if not self.operands or self.base in ("STG", "STS", "ST", "STL", "RED", "BRA", "BSSY", "BSYNC", "EXIT", "CALL",
                                              "RET", "WARPSYNC", "BAR", "NOP", "ATOM", "ATOMS") and self.base not in ("ATOM", "ATOMS"):
            return set()
        m = re.fullmatch(r"R(\d+)(?:\.\w+)*", self.operands[0])
        if not m:
            return set()
        r = int(m.group(1))
        return {r + i for i in range(self.width())}

    def reg_sources(self):
        ops = self.operands if not self.reg_dests() else self.operands[1:]
        regs = set()
        for o in ops:
            for m in REG_RE.finditer(o):
                r = int(m.group(1))
                regs.add(r)
                if ".64" in o:
                    regs.add(r + 1)
        if self.base in ("STG", "STS", "ST", "STL") and ".128" in self.op:
            for m in REG_RE.finditer(self.operands[-1] if self.operands else ""):
                regs.update(int(m.group(1)) + i for i in range(4))
        return regs


# cuobjdump (CUDA 11.8) prints some sm_90 instructions as their encoding alone, without an address or text (seen: an
# integer minimum/maximum). Each such 16-byte slot becomes an instruction of this opcode: counted (as integer/move/other),
# its operands unknown.
NOT_DISASSEMBLED = "NOT_DISASSEMBLED"


def split_functions(sass_text):
    functions, name = {}, None
    for line in sass_text.splitlines():
        m = re.search(r"Function : (\S+)", line)
        if m:
            name = m.group(1)
            functions[name] = []
            continue
        m = INS_RE.match(line)
        if m and name:
            addr = int(m.group(1), 16)
            body = functions[name]
            while body and addr - body[-1].addr > 0x10:  # slots cuobjdump did not print
                body.append(Ins(body[-1].addr + 0x10, NOT_DISASSEMBLED))
            body.append(Ins(addr, m.group(2)))
    return functions


def is_vector_load(ins):
    return ins.base == "LDG" and ".128" in ins.op


OP_CLASSES = [
    ("fp32 FFMA/FMUL/FADD", {"FFMA", "FMUL", "FADD", "FMUL32I", "FADD32I", "FFMA32I"}),
    ("fp32 compare/min/max/select", {"FSETP", "FMNMX", "FSEL", "FSET", "FCHK"}),
    ("conversion F2I/I2F/FRND/F2F", {"F2I", "I2F", "FRND", "F2F", "F2FP", "I2I"}),
    ("fp64", {"DADD", "DMUL", "DFMA", "DSETP", "DMNMX"}),
    ("MUFU", {"MUFU"}),
    ("global load LDG", {"LDG"}),
    ("other memory", {"STG", "LDS", "STS", "LDC", "ULDC", "LD", "ST", "LDL", "STL", "ATOM", "ATOMS", "RED", "ATOMG"}),
    ("warp SHFL/VOTE", {"SHFL", "VOTE", "VOTEU", "MATCH", "REDUX"}),
    ("control", {"BRA", "BSSY", "BSYNC", "EXIT", "WARPSYNC", "BAR", "CALL", "RET", "JMP", "BRX", "BREAK", "YIELD", "NANOSLEEP"}),
]


def op_class(ins):
    for name, ops in OP_CLASSES:
        if ins.base in ops:
            return name
    return "integer/move/other"


def find_loops(ins):
    loops = []
    for i, x in enumerate(ins):
        t = x.branch_target()
        if t is not None and t <= x.addr and x.base == "BRA":
            start = next((j for j, y in enumerate(ins) if y.addr == t), None)
            if start is not None:
                loops.append((start, i))
    return loops


def analyse_hot_loop(ins, width, beaten=False):
    """The steady-state path of the hot loop (module docstring); with beaten, the ranked path (rule f reversed). found is
    False when no loop with 128-bit loads exists."""
    loops = find_loops(ins)
    candidates = [(sum(is_vector_load(x) for x in ins[s:e + 1]), -(e - s), s, e) for s, e in loops]
    candidates = [c for c in candidates if c[0] > 0]
    # innermost: a loop around another loop with vector loads (the work-item loop around the chunk loop, which loads the
    # first chunk ahead before it) is not the hot loop
    candidates = [c for c in candidates if not any(o is not c and c[2] <= o[2] and o[3] <= c[3] for o in candidates)]
    if not candidates:
        return dict(found=False, reason="no loop (backward branch) whose body holds a 128-bit global load (LDG.E.128)")
    _, _, start, end = max(candidates)
    body = ins[start:end + 1]
    index = {x.addr: i for i, x in enumerate(ins)}
    lo, hi = ins[start].addr, ins[end].addr

    # Registers written somewhere in the body; one read on the path before any write on the path holds a value from
    # the previous iteration (loop-carried) when it is in this set.
    written = set()
    for x in body:
        written |= x.reg_dests()

    path, inner, decisions = [], [], []
    pred_def = {}  # predicate -> defining instruction on the path
    reg_def = {}  # register -> last writer on the path
    pred_value = {}  # predicate -> value assumed by an earlier decision
    i, steps = start, 0
    while True:
        steps += 1
        if steps > 200000 or i >= len(ins):
            return dict(found=False, reason="the steady-state walk did not reach the back-edge")
        x = ins[i]
        if x.base != "NOP":
            path.append(x)
        if x.base in ("EXIT", "RET"):
            return dict(found=False, reason=f"the steady-state walk left the loop at {x.addr:#x} ({x.text})")
        for p in x.pred_dests():
            pred_def[p] = x
            pred_value.pop(p, None)
        implied = implied_value(x, pred_value)
        if implied is not None and x.pred_dests() and x.pred_dests()[0] != "PT":
            pred_value[x.pred_dests()[0]] = implied
        for r in x.reg_dests():
            reg_def[r] = x
        if i == end:
            break
        t = x.branch_target()
        if t is None or x.base != "BRA":
            i += 1
            continue
        if t <= x.addr:  # inner loop back-edge: counted per element below; fall out of it
            head = next((k for k, y in enumerate(path) if y.addr == t), None)
            if head is not None:
                inner.append((t, x.addr, len(path) - head))
            i += 1
            continue
        if x.guard is None and ".DIV" not in x.op and ".CONV" not in x.op and not re.match(r"BRA\s+!?U?P\d,", x.text):
            taken, why = (lo <= t <= hi), "unconditional"
        else:
            taken, why = decide_branch(x, t, lo, hi, ins, index, pred_def, written, reg_def, pred_value, path, beaten)
            pred = branch_predicate(x)
            if pred and "a." not in why and "d." not in why:
                pred_value[pred[1]] = taken != pred[0]
        decisions.append((x.addr, x.text, "taken" if taken else "not taken", why))
        i = index[t] if taken and t in index else i + 1

    # A 128-bit load predicated on the lane index is one lane's extra load (lane 0's tail slot of a row whose start is not
    # 16-byte aligned): issued, but it loads no element of an aligned row's iteration.
    lane_loads = {id(x) for x in path if is_vector_load(x) and lane_predicated(x, path, ins[:start])}
    loads = [x for x in path if is_vector_load(x) and id(x) not in lane_loads]
    elements = len(loads) * width
    if elements == 0:
        return dict(found=False, reason="the steady-state path holds no 128-bit load")
    extra = sum(n * (elements - 1) for _, _, n in inner)  # inner loop bodies: once per element
    total = len(path) + extra
    classes = {}
    for x in path:
        classes[op_class(x)] = classes.get(op_class(x), 0) + 1
    for t, b, n in inner:
        head = next(k for k, y in enumerate(path) if y.addr == t)
        for y in path[head:head + n]:
            classes[op_class(y)] = classes.get(op_class(y), 0) + (elements - 1)
    # loads in flight: vector loads issued before the first read of a loaded register
    in_flight, loaded = 0, set()
    for x in path:
        if loaded & x.reg_sources():
            break
        if is_vector_load(x) and id(x) not in lane_loads:
            in_flight += 1
            loaded |= x.reg_dests()
    # loads ahead: issued for a later iteration (the warp's next chunk), so in flight during this one's arithmetic: no
    # instruction after them on the path reads their destination registers
    position = {id(x): k for k, x in enumerate(path)}
    ahead = sum(1 for x in loads if not any(x.reg_dests() & y.reg_sources() for y in path[position[id(x)] + 1:]))
    static_total = sum(1 for x in body if x.base != "NOP")
    return dict(found=True, loop=(lo, hi), path_instructions=total, elements_per_lane=elements,
                instructions_per_element=total / elements, static_per_element=static_total / elements,
                static_instructions=static_total, vector_loads=len(loads), loads_in_flight=in_flight, loads_ahead=ahead,
                inner_loops=[(f"{t:#x}", f"{b:#x}", n) for t, b, n in inner],
                classes={k: v / elements for k, v in sorted(classes.items(), key=lambda kv: -kv[1])},
                decisions=decisions)


def lane_predicated(x, path, before_loop=()):
    """Whether instruction x (on the path) is guarded by a predicate computed from the thread index (S2R SR_TID /
    SR_LANEID), through the path's integer compares, predicate logic and bit operations before it (a value the path
    does not write comes from the code before the loop, before_loop)."""
    m = re.search(r"(!?)(U?P\d)", x.guard or "")
    if not m:
        return False
    at = next(i for i, y in enumerate(path) if y is x)

    code = list(before_loop) + list(path)
    at += len(before_loop)

    def writer(reg=None, pred=None, before=0):  # the last instruction before index `before` (of code) writing it
        for k in range(before - 1, -1, -1):
            y = code[k]
            if (reg is not None and reg in y.reg_dests()) or (pred is not None and pred in y.pred_dests()):
                return k
        return None

    def from_tid(k, depth):
        if k is None or depth > 6:
            return False
        ins = code[k]
        if ins.base in ("S2R", "S2UR") and re.search(r"SR_(TID|LANEID)", ins.text):
            return True
        if ins.base not in ("ISETP", "PLOP3", "LOP3", "IADD3", "IMAD", "SHF", "SEL", "MOV", "PRMT"):
            return False
        sources = [writer(reg=r, before=k) for r in ins.reg_sources()]
        sources += [writer(pred=p, before=k)
                    for p in re.findall(r"\bU?P\d\b", " ".join(ins.operands[2:] if ins.pred_dests() else ins.operands))]
        return any(from_tid(q, depth + 1) for q in sources)

    return from_tid(writer(pred=m.group(2), before=at), 0)


# Operations through which a value is still "the running best" for rule f (moves, selects, min/max, the bit operations
# of an order-key conversion).
RUNNING_BEST_OPS = ("FSEL", "SEL", "FMNMX", "IMNMX", "MOV", "IMAD", "LOP3", "SHF", "IADD3")


def running_best_operand(d, path, written):
    """Whether compare d (on the path) reads a running best: a loop-carried register (read before any write on the path),
    or a shared-memory load (LDS: a floor the block's warps raise), directly or through RUNNING_BEST_OPS, following each
    source to its last writer before the reading instruction."""
    def writer(r, before):
        for k in range(before - 1, -1, -1):
            if r in path[k].reg_dests():
                return k
        return None

    def trace(r, before, depth):
        k = writer(r, before)
        if k is None:
            return r in written
        w = path[k]
        if w.base == "LDS":
            return True
        if depth > 6 or w.base not in RUNNING_BEST_OPS or (w.base == "IMAD" and ".MOV" not in w.op):
            return False
        return any(trace(q, k, depth + 1) for q in w.reg_sources())

    at = next((k for k in range(len(path) - 1, -1, -1) if path[k] is d), None)
    return at is not None and any(trace(r, at, 0) for r in d.reg_sources())


def invariant_compare(d, reg_def, written):
    """A compare of values that do not change in the loop: registers not written on the path so far (and not
    loop-carried) or loaded from the constant bank (kernel parameters), against immediates or uniform registers."""
    if d.base not in ("FSETP", "ISETP", "DSETP"):
        return False
    sources = d.reg_sources()
    if not sources:
        return False
    for r in sources:
        w = reg_def.get(r)
        if w is None and r in written:
            return False
        if w is not None and not (w.base in ("LDC", "ULDC") or (w.base in ("MOV", "IMAD") and "c[0x0]" in w.text)):
            return False
    return True


def parameter_compare(d, reg_def):
    """An integer compare of a kernel parameter loaded in the loop (LDC c[0x0][...]) with a value that changes in it: in
    a ranked chunk, the test whether the chunk holds the mask id."""
    return any((w := reg_def.get(r)) is not None and w.base in ("LDC", "ULDC") and "c[0x0]" in w.text for r in d.reg_sources())


def branch_predicate(x):
    """(negated, predicate) of a conditional branch."""
    m = re.search(r"(!?)(U?P\d)", x.guard or "")
    if not m:  # "BRA P2, target" (predicate operand only)
        m = re.match(r"BRA\s+(!?)(U?P\d),", x.text)
    return (m.group(1) == "!", m.group(2)) if m else None


def implied_value(x, pred_value):
    """The value of a compare's destination predicate when its combining predicate operand decides it
    (X.OR with a true operand, X.AND with a false one), given the values assumed so far."""
    if x.base not in ("FSETP", "ISETP", "DSETP", "PLOP3") or len(x.operands) < 5 or x.guard:
        return None
    m = re.fullmatch(r"(!?)(U?P\d)", x.operands[-1])
    if not m or m.group(2) not in pred_value:
        return None
    v = pred_value[m.group(2)] != (m.group(1) == "!")
    if ".OR" in x.op and v:
        return True
    if ".AND" in x.op and not v:
        return False
    return None


def decide_branch(x, t, lo, hi, ins, index, pred_def, written, reg_def, pred_value, path, beaten=False):
    if ".DIV" in x.op or ".CONV" in x.op:
        return False, "a. warp-divergence fallback"
    if not lo <= t <= hi:
        return False, "a. leaves the loop body"
    negated, pred = branch_predicate(x) or (False, None)
    d = pred_def.get(pred)
    value = None
    if pred in pred_value:
        return pred_value[pred] != negated, "implied by an earlier assumption"
    if d is not None and d.base in ("VOTE", "VOTEU"):
        value = ".ALL" in d.op
        why = "b. vote: every lane good"
    elif d is not None and d.base in ("ISETP", "UISETP") and any(o.lower() == "0x7fffffff" for o in d.operands):
        value = ".EQ" in d.op
        why = "c. INT_MAX sentinel: no bad id"
    if value is not None:
        return value != negated, why
    # The two sides of the branch: its fall-through up to the target (stopping at an unconditional jump to the target or
    # past it: the end of an if-branch, whose jump's target is the join), and the target's side up to that join. The side
    # with more unpredicated 128-bit loads is the vector path (the other: the id-by-id path, whose loads of the next
    # chunk, if any, are predicated).
    fall, join = [], None
    for y in ins[index[x.addr] + 1:index[t]]:
        fall.append(y)
        target = y.branch_target()
        if y.base == "BRA" and y.guard is None and target is not None and target >= t and not re.match(r"BRA\s+!?U?P\d,", y.text):
            join = target
            break
    other = ins[index[t]:index[join]] if join is not None and join in index and join > t else []
    loads_fall = sum(1 for y in fall if is_vector_load(y) and y.guard is None)
    loads_target = sum(1 for y in other if is_vector_load(y) and y.guard is None)
    if loads_fall or loads_target:
        return loads_target > loads_fall, "d. the side with more 128-bit loads (the vector path)"
    if d is None or invariant_compare(d, reg_def, written):
        return True, "e. loop-invariant predicate: optional work skipped"
    if d.base in ("FSETP", "DSETP", "HSETP2", "ISETP") and running_best_operand(d, path, written):
        return (False, "f. running best beaten (the ranked path)") if beaten else (True, "f. running best not beaten")
    if beaten and d.base == "ISETP" and parameter_compare(d, reg_def):
        # The two sides end where the branch reconverges: the BSSY just before it names that address.
        at = index[x.addr]
        sync = next((y for y in reversed(ins[max(0, at - 8):at]) if y.base == "BSSY"), None)
        m = re.search(r"0x([0-9a-f]+)\s*;?\s*$", sync.text) if sync is not None else None
        join = int(m.group(1), 16) if m else None
        if join is not None and join > t and join in index:
            fall_side, target_side = index[t] - at - 1, index[join] - index[t]
            return target_side < fall_side, "h. the mask-id test in a ranked chunk: the shorter side (the chunks without it)"
    return False, "g. fall through"


# ---- launches per step (static) ----

def function_body(text, name_pattern):
    m = re.search(name_pattern, text)
    if not m:
        return None
    i = text.find("{", m.end())
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j + 1]
    return None


def launches_per_step(root):
    # saber_decode_step's file: native/src/device/decode.cu, or native/src/device.cu in a --base revision from before the
    # device entry points were split by resource
    candidates = [os.path.join(root, "native", "src", *path) for path in (("device", "decode.cu"), ("device.cu",))]
    device = next((c for c in candidates if os.path.exists(c)), None)
    if device is None:
        return dict(found=False, reason="native/src/device/decode.cu not found")
    body = function_body(open(device).read(), r"saber_decode_step\s*\(")
    if body is None:
        return dict(found=False, reason=f"saber_decode_step not found in {os.path.relpath(device, root)}")
    kernels_dir = os.path.join(root, "native", "src", "kernels")
    sources = "".join(open(os.path.join(kernels_dir, f)).read() for f in sorted(os.listdir(kernels_dir)) if f.endswith(".cu"))
    launchers = re.findall(r"\b(launch_\w+)\s*\(", body)
    kernels_always, kernels_conditional = [], []
    for launcher in dict.fromkeys(launchers):
        lbody = function_body(sources, r"cudaError_t\s+" + launcher + r"\s*\(")
        if lbody is None:
            continue
        # follow the helpers it calls, defined in the same sources (launch_typed, ...), recursively
        bodies, seen, work = [], {launcher}, [lbody]
        while work:
            b = work.pop()
            bodies.append(b)
            for helper in re.findall(r"\b(launch_\w+)\s*(?:<[^;()]*>)?\s*\(", b):
                if helper not in seen:
                    seen.add(helper)
                    hb = function_body(sources, r"(?:void|cudaError_t)\s+" + helper + r"\s*\(")
                    if hb:
                        work.append(hb)
        for b in bodies:
            lines = b.splitlines()
            blocks = []  # for each open brace: whether an if/else opened it
            for n, line in enumerate(lines):
                inside_if = any(blocks)
                for ch in line:
                    if ch == "{":
                        blocks.append(bool(re.search(r"\bif\s*\(|\belse\b", line)))
                    elif ch == "}" and blocks:
                        blocks.pop()
                for k in re.findall(r"(\w+)(?:<[^<>;]*>)?<<<", line):
                    if "reference" in k:
                        continue  # the reference path is not the step's fast path
                    context = line + (lines[n - 1] if n and lines[n - 1].rstrip().endswith(")") else "")
                    conditional = inside_if or re.search(r"\bif\s*\(|\?", context)
                    target = kernels_conditional if conditional else kernels_always
                    if k not in kernels_always and k not in kernels_conditional:
                        target.append(k)
    direct = re.findall(r"<<<", body)
    copies = re.findall(r"\bcuda(Memcpy\w*Async|MemsetAsync|EventRecord\w*|LaunchHostFunc|StreamWaitEvent)\s*\(", body)
    return dict(found=True, launchers=list(dict.fromkeys(launchers)), kernels=kernels_always,
                conditional_kernels=kernels_conditional, launches_min=len(kernels_always) + len(direct),
                launches_max=len(kernels_always) + len(kernels_conditional) + len(direct),
                other_stream_operations=["cuda" + c for c in copies])


# ---- report of one tree ----

def kernel_label(demangled):
    m = re.search(r"(\w+)<(.*)>\(", demangled)
    name = re.search(r"(\w+)(?:<.*>)?\(", demangled)
    short = name.group(1) if name else demangled
    dtype, variant = None, ""
    if m:
        args = [a.strip() for a in m.group(2).split(",")]
        dtype = DTYPES.get(args[0], (None,))[0]
        flags = [{"(bool)1": "true", "(bool)0": "false"}.get(a, a) for a in args[1:]]
        if short == "row_confidence_kernel" and len(flags) in (2, 3):   # <T, kSampled, kEntropy[, kRunnerUp]>
            variant = ("sampled" if flags[0] == "true" else "greedy") + ("+entropy" if flags[1] == "true" else "")
            variant += "+runner-up" if len(flags) == 3 and flags[2] == "true" else ""
        elif flags:
            variant = ",".join(flags)
    return short, dtype, variant


def analyse_tree(root, nvcc, label):
    work = tempfile.mkdtemp(prefix="kernel_report_")
    try:
        compiled = compile_tree(root, nvcc, work)
        sizes = block_sizes(root)
        kernels, row_pass = [], {}
        cuobjdump = find_tool("cuobjdump")
        for source, cubin, ptxas in compiled:
            info = parse_ptxas(ptxas)
            names = demangle(list(info))
            sass = split_functions(run([cuobjdump, "-sass", cubin])) if cuobjdump else {}
            for mangled, props in info.items():
                short, dtype, variant = kernel_label(names[mangled])
                threads = sizes.get(short)
                occ = occupancy(props["registers"], props["smem"], threads)
                entry = dict(source=source, kernel=short, dtype=dtype, variant=variant, threads=threads, **props,
                             occupancy=occ["occupancy"] if occ else None, blocks_per_sm=occ["blocks_per_sm"] if occ else None,
                             limiter=occ["limiter"] if occ else None)
                if short == "row_confidence_kernel" and dtype:
                    width = 16 // next(b for t, (d, b) in DTYPES.items() if d == dtype)
                    try:
                        entry["hot_loop"] = analyse_hot_loop(sass.get(mangled, []), width)
                        entry["hot_loop_ranked"] = analyse_hot_loop(sass.get(mangled, []), width, beaten=True)
                    except Exception as e:  # unexpected SASS: say so, do not fail the report
                        entry["hot_loop"] = dict(found=False, reason=f"analysis failed: {type(e).__name__}: {e}")
                    entry["variant"] = variant or "runtime flags"
                    row_pass.setdefault(dtype, {})[entry["variant"]] = entry
                kernels.append(entry)
        kernels.sort(key=lambda k: (k["source"], k["kernel"], k["dtype"] or "", k["variant"]))
        launches = launches_per_step(root)
        # How a split row is finished: by a second kernel after the row pass (before issue 27's last-block merge), or in
        # the row pass by the block of the row's last split to arrive.
        combine = "combine_row_splits_kernel" in launches.get("kernels", []) + launches.get("conditional_kernels", [])
        for variants in row_pass.values():
            for entry in variants.values():
                entry["combine_kernel"] = combine
        return dict(label=label, root=root, kernels=kernels, row_pass=row_pass, launches=launches)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def headline(row_pass, dtype):
    """The row-pass instance the summary speaks for: greedy without entropy (or the only, runtime-flag, kernel)."""
    variants = row_pass.get(dtype, {})
    for v in ("greedy", "runtime flags"):
        if v in variants:
            return variants[v]
    return next(iter(variants.values()), None)


def path_mix(entry, ranked_fraction):
    """Instructions and pipe classes per element of a row whose chunks are ranked at `ranked_fraction`: the hot loop's
    steady path on the others, its ranked path on those. None without a steady path (or a ranked one when needed)."""
    hot, ranked = entry.get("hot_loop") or {}, entry.get("hot_loop_ranked") or {}
    if not hot.get("found") or (ranked_fraction > 0 and not ranked.get("found")):
        return None
    f = ranked_fraction
    rc = ranked.get("classes", {}) if f > 0 else {}
    return dict(instructions_per_element=(1 - f) * hot["instructions_per_element"] + (f * ranked["instructions_per_element"] if f > 0 else 0.0),
                classes={k: (1 - f) * hot["classes"].get(k, 0.0) + f * rc.get(k, 0.0) for k in set(hot["classes"]) | set(rc)})


def mva(customers, think, demands):
    """Exact mean value analysis of a closed queueing network: `customers` warps, each cycling through a delay of
    `think` cycles (its exposed load latency) and single-server stations of the given demands (cycles per chunk).
    Returns the throughput in chunks per cycle."""
    queues, x = [0.0] * len(demands), 0.0
    for n in range(1, customers + 1):
        residence = [d * (1 + q) for d, q in zip(demands, queues)]
        x = n / (think + sum(residence))
        queues = [x * r for r in residence]
    return x


def split_arrival_cycles():
    """A split row's block arriving at the row's counter (finish_split_item): the barrier before thread 0's release
    fence, the fence and the counter's atomic (two dependent round trips; the acquire fence after the atomic has no
    write outstanding and is not counted), then the barrier that shares the answer."""
    m = STEP_MODEL
    return 2 * m["round_trip_us"] * CLOCK_GHZ * 1e3 + 2 * m["barrier_cycles"]


def row_finish_cycles(chunks):
    """Finishing one row in a block (finish_row_in_block): a read of its chunk partials, the chunk terms' dependent FP64
    additions in chunk order by one thread between two barriers, then finish_row's read of the winning logits (two
    round trips in all). The row-pass model and the step estimate both count it."""
    m = STEP_MODEL
    return 2 * chunks * m["dadd_cycles"] + 2 * m["barrier_cycles"] + 2 * m["round_trip_us"] * CLOCK_GHZ * 1e3   # us x GHz x 1e3 = cycles


def row_pass_model(entry, dtype_bytes, mix, gpu, rows=ROWS, vocabulary=VOCAB):
    """ESTIMATE of one row pass over `rows` rows of `vocabulary` ids on `gpu` (section "The model" of the report):
    the work items (row, split) of plan_row_split in waves of resident blocks; a wave's streaming time from an exact
    mean value analysis of each scheduler's warps (a delay of the DRAM latency per chunk, the scheduler as one station,
    its share of HBM as another); each item's tail (finishing the row in the block; with splits, writing its split's
    summary and arriving at the row's counter, and on the busiest SM of a wave one row finished by its last split's
    block, or, before the last-block merge, the combine kernel after a launch gap). Returns the times and the fraction
    of HBM bandwidth."""
    if mix is None or not entry.get("blocks_per_sm") or not entry.get("threads"):
        return None
    clock = CLOCK_GHZ * 1e9
    ipe = mix["instructions_per_element"]
    per_element = {"dispatch": ipe / (SCHEDULERS * SM90["warp"])}   # cycles of the SM per element, by limit
    for name, count in mix["classes"].items():
        if name in PIPE_RATES:
            per_element[name] = count / PIPE_RATES[name]
    binding = max(per_element, key=per_element.get)
    chunks = -(-vocabulary // CHUNK)
    resident, warps_per_block = entry["blocks_per_sm"], entry["threads"] // SM90["warp"]
    splits, per_split = plan_row_split(rows, vocabulary, gpu["sms"], resident)
    items, slots = rows * splits, gpu["sms"] * resident
    # One scheduler's sub-network: its warps, the scheduler (a quarter of the SM's issue rate), a quarter of the SM's
    # share of HBM bandwidth; the SM's throughput is four of them.
    issue_demand = per_element[binding] * CHUNK * SCHEDULERS
    memory_demand = CHUNK * dtype_bytes * gpu["sms"] * clock / gpu["bandwidth"] * SCHEDULERS
    latency = DRAM_LATENCY_NS * 1e-9 * clock
    m = STEP_MODEL
    finish = row_finish_cycles(chunks)
    combine_kernel = entry.get("combine_kernel", True)
    if splits == 1:
        tail = finish
    elif combine_kernel:
        tail = 2 * m["barrier_cycles"]   # reduce_block, then the split's summary
    else:
        tail = 2 * m["barrier_cycles"] + split_arrival_cycles() + finish   # the wave's last arrival finishes its row
    stream = tails = 0.0
    for first in range(0, items, slots):
        blocks = min(resident, -(-min(slots, items - first) // gpu["sms"]))   # on the busiest SM of the wave
        x = SCHEDULERS * mva(max(1, blocks * warps_per_block // SCHEDULERS), latency, [issue_demand, memory_demand])
        stream += blocks * per_split / x
        tails += tail
    combine = 0.0
    if splits > 1 and combine_kernel:   # combine_row_splits_kernel: grid-stride over the rows, each merged and finished by a block
        combine = m["launch_gap_us"] * 1e-6 * clock + -(-rows // slots) * (m["round_trip_us"] * 1e-6 * clock + finish)
    total_us = (stream + tails + combine) / clock * 1e6
    memory_us = rows * vocabulary * dtype_bytes / gpu["bandwidth"] * 1e6
    issue_us = per_element[binding] * rows * vocabulary / (gpu["sms"] * clock) * 1e6
    return dict(binding=binding, issue_us=issue_us, memory_us=memory_us, stream_us=stream / clock * 1e6, total_us=total_us,
                fraction=memory_us / total_us)


def on_both_gpus(entry, dtype_bytes, mix):
    """row_pass_model on each GPU for this instruction mix, with the mix's instructions per element; None if it cannot."""
    out = {key: row_pass_model(entry, dtype_bytes, mix, gpu) for key, gpu in GPUS.items()} if mix else {}
    if not out or any(v is None for v in out.values()):
        return None
    for v in out.values():
        v["instructions_per_element"] = mix["instructions_per_element"]
    return out


def ceiling(entry, dtype_bytes):
    """The model's fraction of HBM bandwidth with a free hot loop (a thousandth of an instruction per element): what the
    rows' tails (split rows' finishing included) and the DRAM latency alone allow, whatever the arithmetic costs."""
    out = on_both_gpus(entry, dtype_bytes, dict(instructions_per_element=1e-3, classes={}))
    return None if out is None else {key: v["fraction"] for key, v in out.items()}


def roofline(entry, dtype_bytes, ranked_fraction=0.0):
    """The row-pass model on both GPUs for rows whose chunks are ranked at `ranked_fraction` (0: the steady path)."""
    return on_both_gpus(entry, dtype_bytes, path_mix(entry, ranked_fraction))


def summary(tree):
    result = {}
    for dtype, size in (("f32", 4), ("f16", 2), ("bf16", 2)):
        e = headline(tree["row_pass"], dtype)
        if e is None:
            result[dtype] = None
            continue
        hot, roof, top = e.get("hot_loop") or {}, roofline(e, size), ceiling(e, size)
        ranked = e.get("hot_loop_ranked") or {}
        result[dtype] = dict(
            kernel=f"row_confidence_kernel<{dtype}, {e['variant']}>", registers=e["registers"], occupancy=e["occupancy"],
            instructions_per_element=round(hot["instructions_per_element"], 2) if hot.get("found") else None,
            ranked_instructions_per_element=round(ranked["instructions_per_element"], 2) if ranked.get("found") else None,
            static_instructions_per_element=round(hot["static_per_element"], 2) if hot.get("found") else None,
            loads_in_flight=hot.get("loads_in_flight"), loads_ahead=hot.get("loads_ahead"),
            fraction_of_hbm_h100=round(roof["h100"]["fraction"], 3) if roof else None,
            fraction_of_hbm_h200=round(roof["h200"]["fraction"], 3) if roof else None,
            issue_limit=roof["h100"]["binding"] if roof else None,
            issue_us_h100=round(roof["h100"]["issue_us"], 1) if roof else None,
            memory_us_h100=round(roof["h100"]["memory_us"], 1) if roof else None,
            issue_us_h200=round(roof["h200"]["issue_us"], 1) if roof else None,
            memory_us_h200=round(roof["h200"]["memory_us"], 1) if roof else None,
            row_pass_us_h100=round(roof["h100"]["total_us"], 1) if roof else None,
            row_pass_us_h200=round(roof["h200"]["total_us"], 1) if roof else None,
            ceiling_fraction_of_hbm_h100=round(top["h100"], 3) if top else None,
            ceiling_fraction_of_hbm_h200=round(top["h200"], 3) if top else None,
            hot_loop_found=bool(hot.get("found")), hot_loop_note=None if hot.get("found") else hot.get("reason"))
    return result


def by_shape(tree, census):
    """row_pass_by_shape: for each row shape and dtype, the census's ranked fraction, the mixed instructions per element
    and the model's fraction of HBM bandwidth on both GPUs; None when there is no census."""
    if not census:
        return None
    out = {}
    for shape in ROW_SHAPES:
        out[shape] = {}
        for dtype, size in (("f32", 4), ("f16", 2), ("bf16", 2)):
            e, c = headline(tree["row_pass"], dtype), census["shapes"].get(shape, {}).get(dtype)
            roof = roofline(e, size, c["ranked_fraction"]) if e and c else None
            out[shape][dtype] = None if roof is None else dict(
                ranked_fraction=round(c["ranked_fraction"], 4),
                instructions_per_element=round(roof["h100"]["instructions_per_element"], 2),
                fraction_of_hbm_h100=round(roof["h100"]["fraction"], 3), fraction_of_hbm_h200=round(roof["h200"]["fraction"], 3),
                row_pass_us_h100=round(roof["h100"]["total_us"], 1), row_pass_us_h200=round(roof["h200"]["total_us"], 1),
                limit=roof["h100"]["binding"])
    return out


def run_census(root, host_tests):
    """The ranked-chunk census of native/tests/host_tests.cpp (FastRowPass.RankedChunksByRowShape), from the built host
    test binary; (census, None) or (None, reason)."""
    candidates = [host_tests] if host_tests else sorted(
        os.path.join(root, "build", d, "native", "saber_host_tests") for d in (os.listdir(os.path.join(root, "build")) if os.path.isdir(os.path.join(root, "build")) else []))
    binary = next((c for c in candidates if c and os.path.isfile(c) and os.access(c, os.X_OK)), None)
    if binary is None:
        return None, "no built saber_host_tests (build/*/native/saber_host_tests; cmake -S . -B build/dev builds it, or --host-tests PATH)"
    handle, path = tempfile.mkstemp(suffix=".json")
    os.close(handle)
    try:
        log(f"running the ranked-chunk census: {binary}")
        result = subprocess.run([binary, "--gtest_filter=FastRowPass.RankedChunksByRowShape"], env=dict(os.environ, SABER_ROW_SHAPES_JSON=path),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            return None, f"{binary} --gtest_filter=FastRowPass.RankedChunksByRowShape failed: {result.stdout[-800:]}"
        with open(path) as f:
            census = json.load(f)
        census["binary"] = os.path.relpath(binary, root)
        return census, None
    finally:
        os.unlink(path)


# ---- whole step vs row pass (a latency model: ESTIMATE) ----
# A step of one request (batch 1) in its last block, where Saber reads every position's row: G rows of VOCAB bf16
# logits. The row pass time is the roofline above, scaled to G rows. The rest of the step is latency, which instruction
# counts do not give, so it comes from this model; each figure is an assumption stated in the report, none is measured.
STEP_MODEL = dict(
    launch_gap_us=2.0,        # a dependent kernel starting after the previous one drains (stream order or graph replay)
    round_trip_us=0.6,        # one dependent global-memory round trip (DRAM_LATENCY_NS), an atomic or a device fence
    system_fence_us=1.0,      # __threadfence_system with a posted write to mapped host memory outstanding
    barrier_cycles=60,        # a block barrier with the shared-memory load/compare/store before it
    warp_phase_cycles=30,     # a warp-synchronous bitonic stage (shared memory, __syncwarp)
    dadd_cycles=8,            # a dependent FP64 add
)
# Decide's block barriers on a Saber step with backtracking and no draft fallback, K = G, counted by the host test
# DecideHost.BlockBarriersOfASaberStep (native/tests/decide_tests.cpp), and the warp-synchronous stages of its sort; the
# handshake adds 2 in every block and the last block plan_rows (one tile: 4), which also counts the active sequences.
# tau takes the exact integer path (no sequential chain) whenever every commit confidence is 0 or at least 2^-20, which covers every G <= 1024 step of a
# vocabulary below 2^20.
DECIDE_BARRIERS = {256: dict(block=10, warp=30), 1024: dict(block=19, warp=40)}
LAST_BLOCK_BARRIERS = 4
HANDSHAKE_BARRIERS = 2
STEP_VOCAB, STEP_SMS, STEP_RESIDENT, STEP_K = 126464, 132, 4, 32


def plan_row_split(rows, vocabulary, sms, resident):
    """native/src/kernels/row_confidence.cu's plan_row_split (the split fixed at decode create for the first block's rows)."""
    chunks = -(-vocabulary // 1024)
    wave = sms * resident
    if rows >= wave:
        return 1, chunks
    best, best_time = (1, chunks), chunks
    for wanted in range(2, max(1, chunks // 16) + 1):
        wanted = max(1, min(wanted, chunks))
        per = -(-chunks // wanted)
        splits = -(-chunks // per)
        time = -(-(rows * splits) // wave) * per
        if time < best_time:
            best, best_time = (splits, per), time
    return best


def step_estimate(tree):
    """step / row pass for G = 256 and 1024 (batch 1, bf16), or None with the reason, and the parts of each."""
    e = headline(tree["row_pass"], "bf16")
    roof = roofline(e, 2) if e else None
    if roof is None:
        return None, "no bf16 row-pass roofline (hot loop not found)"
    m, ghz = STEP_MODEL, CLOCK_GHZ
    cycles = lambda n: n / (ghz * 1e3)  # cycles -> us
    row_256 = roof["h100"]["stream_us"]  # the model's streaming time of ROWS = 256 rows (tails added below per G)
    out = {}
    splits, _ = plan_row_split(STEP_K, STEP_VOCAB, STEP_SMS, STEP_RESIDENT)
    # Finishing a row (row_finish_cycles); with a split, after the arrival at the row's counter (split_arrival_cycles), or
    # before the last-block merge in a second kernel after a launch gap and a read of the split summaries.
    finish = cycles(row_finish_cycles(-(-STEP_VOCAB // CHUNK)))
    if splits == 1:
        combine = 0.0
    elif e.get("combine_kernel", True):
        combine = m["launch_gap_us"] + m["round_trip_us"]
    else:
        combine = cycles(split_arrival_cycles())
    for g in (256, 1024):
        stream = row_256 * g / ROWS
        row_pass = stream + finish + combine
        b = DECIDE_BARRIERS[g]
        decide = (m["launch_gap_us"] + m["round_trip_us"]                          # launch, stage the sequence in shared memory
                  + cycles((b["block"] + HANDSHAKE_BARRIERS) * m["barrier_cycles"] + b["warp"] * m["warp_phase_cycles"])
                  + 2 * m["round_trip_us"]                                          # write back + fence, handshake atomic
                  + m["round_trip_us"] + cycles(LAST_BLOCK_BARRIERS * m["barrier_cycles"])  # last block: one pass (plan, count)
                  + m["system_fence_us"])                                           # publish the status (one fence)
        out[f"g{g}"] = dict(ratio=round((row_pass + decide) / row_pass, 3), ratio_over_stream=round((row_pass + decide) / stream, 3),
                            row_pass_us=round(row_pass, 1),
                            row_stream_us=round(stream, 1), row_finish_us=round(finish + combine, 1), decide_us=round(decide, 1),
                            splits=splits)
    return out, None


# ---- output ----
# ---- output ----

def fmt(v, digits=1, pct=False):
    if v is None:
        return "n/a"
    if pct:
        return f"{100 * v:.{digits}f}%"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


STEP_NOTE = ("ESTIMATE, H100, batch 1, bf16, V = 126464, Saber's last block (G rows): (row pass + decide) / row pass, "
             "where the row pass is its kernels: the roofline scaled to G rows plus finishing the rows (and the split merge "
             "kernel when the plan splits); the stricter ratio over the streaming time alone is given beside it. Decide is a latency model (launch gap, memory round trips, barriers, fences) with the assumptions "
             "listed in the markdown report; nothing is measured. Measure it on a GPU with bench/run_gpu.sh.")


def step_lines(tree):
    steps, reason = step_estimate(tree)
    if steps is None:
        return [f"Not estimated: {reason}."]
    lines = ["| G | row pass: stream (us) | row pass: finish + merge (us) | decide + bookkeeping (us) | splits | "
             "step / row-pass kernels | step / streaming alone | target |",
             "|---|---|---|---|---|---|---|---|"]
    for g, target in ((256, 1.25), (1024, 1.5)):
        d = steps[f"g{g}"]
        lines.append(f"| {g} | {d['row_stream_us']} | {d['row_finish_us']} | {d['decide_us']} | {d['splits']} | "
                     f"{d['ratio']:.2f} | {d['ratio_over_stream']:.2f} | <= {target} |")
    m = STEP_MODEL
    lines += ["", f"{STEP_NOTE} Assumptions: a dependent kernel boundary costs {m['launch_gap_us']} us; a dependent global "
              f"round trip, atomic or device fence {m['round_trip_us']} us; a system fence with a mapped-memory write "
              f"{m['system_fence_us']} us; a block barrier phase {m['barrier_cycles']} cycles, a warp-synchronous sort stage "
              f"{m['warp_phase_cycles']}, a dependent FP64 add {m['dadd_cycles']}; decide's barriers as counted by the host "
              f"test DecideHost.BlockBarriersOfASaberStep ({DECIDE_BARRIERS[256]['block']} block barriers at G = 256, "
              f"{DECIDE_BARRIERS[1024]['block']} at G = 1024, plus {HANDSHAKE_BARRIERS} for the handshake and {LAST_BLOCK_BARRIERS} in the last block, whose one pass over the sequences writes the row plan and counts the active ones); the split is "
              f"plan_row_split's for the first block's {STEP_K} rows on {STEP_SMS} SMs x {STEP_RESIDENT} resident blocks."]
    return lines


def shape_lines(tree, meta):
    census = meta.get("census")
    shapes = by_shape(tree, census)
    if shapes is None:
        return [f"Not estimated: {meta.get('census_reason') or 'no census'}."]
    lines = [f"Each shape's rows are ranked at the rate the host emulation counts (`{census['binary']} "
             f"--gtest_filter=FastRowPass.RankedChunksByRowShape`: {census['rows']} rows of each shape and type, V = "
             f"{census['vocabulary']}, {census['splits']} splits, as the row pass plans the {ROWS} rows below); a ranked "
             "chunk costs the hot loop's ranked path, the others its steady path. Shapes: random N(0, 2^2) logits (an "
             "early step, every position open), peaked (the same plus one id 20 above: a position the model is sure of), "
             "falling with the id (the best case). Targets (issue 27, random rows): at least 80% of H100 HBM for every "
             "type, at least 70% of H200 HBM for bf16.", "",
             "| shape | dtype | chunks ranked | instr/element | limit | row pass, H100 (us) | fraction of HBM, H100 | row pass, H200 (us) | fraction of HBM, H200 | target |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for shape in ROW_SHAPES:
        for dtype in ("f32", "f16", "bf16"):
            d = shapes[shape][dtype]
            if d is None:
                lines.append(f"| {shape} | {dtype} | n/a | | | | | | | |")
                continue
            target = ""
            if shape == "random":
                goals = [(g, TARGETS[g][dtype]) for g in ("h100", "h200") if dtype in TARGETS[g]]
                target = "; ".join(f"{g.upper()} >= {100 * t:.0f}%: {'met' if d[f'fraction_of_hbm_{g}'] >= t else 'NOT met'}" for g, t in goals)
            lines.append(f"| {shape} | {dtype} | {fmt(d['ranked_fraction'], 1, True)} | {d['instructions_per_element']:.1f} | {d['limit']} | "
                         f"{d['row_pass_us_h100']} | {fmt(d['fraction_of_hbm_h100'], 1, True)} | {d['row_pass_us_h200']} | "
                         f"{fmt(d['fraction_of_hbm_h200'], 1, True)} | {target} |")
    tops = summary(tree)
    if all(tops.get(t) and tops[t].get("ceiling_fraction_of_hbm_h100") is not None for t in ("f32", "bf16")):
        lines += ["", "The ceiling, the same model with a free hot loop (what the rows' tails and the DRAM "
                  f"latency alone allow): f32 {fmt(tops['f32']['ceiling_fraction_of_hbm_h100'], 1, True)} of H100 and "
                  f"{fmt(tops['f32']['ceiling_fraction_of_hbm_h200'], 1, True)} of H200 HBM, 16-bit "
                  f"{fmt(tops['bf16']['ceiling_fraction_of_hbm_h100'], 1, True)} and {fmt(tops['bf16']['ceiling_fraction_of_hbm_h200'], 1, True)}. "
                  "Where a ceiling is below its target, cheaper arithmetic alone cannot meet it: the tails must shrink too."]
    return lines


def markdown(trees, meta):
    after = trees[-1]
    before = trees[0] if len(trees) > 1 else None
    cols = [("before", before), ("after", after)] if before else [("this tree", after)]
    lines = [f"# Static kernel report, sm_90 — {meta['date']}", "",
             "**Every time and bandwidth fraction below is an ESTIMATE from compiler output (ptxas, SASS instruction "
             "counts) and peak rates. Nothing was run on a GPU; no figure here is a measured GPU time.**", "",
             f"- command: `{meta['command']}`",
             f"- date: {meta['date']} (generated {meta['generated']})",
             f"- machine: {meta['machine']} (no GPU)",
             f"- compiler: {meta['nvcc']}, `-O3 -arch=sm_90 -cubin -Xptxas -v` on native/src/kernels/*.cu",
             ]
    for name, t in cols:
        lines.append(f"- {name}: {t['label']}")
    for note in meta.get("notes", []):
        lines += ["", note]
    lines += ["", "## Row pass summary (greedy, no entropy; 256 rows x 126464 ids, G = 1024)", "",
              "| dtype | figure | " + " | ".join(n for n, _ in cols) + " |", "|---|---|" + "---|" * len(cols)]
    sums = [(n, summary(t)) for n, t in cols]
    rows = [("registers", "registers", 0, False), ("occupancy (theoretical)", "occupancy", 1, True),
            ("SASS instructions / element (steady-state path)", "instructions_per_element", 1, False),
            ("SASS instructions / element (ranked path: every chunk ranked)", "ranked_instructions_per_element", 1, False),
            ("static loop body size / element (all paths, inner loops once)", "static_instructions_per_element", 1, False),
            ("128-bit loads in flight / thread", "loads_in_flight", 0, False),
            ("of them for the next chunk (in flight during this chunk's arithmetic)", "loads_ahead", 0, False),
            ("issue limit (dispatch or the busiest pipe)", "issue_limit", 0, False),
            ("ESTIMATE issue time, H100 (us)", "issue_us_h100", 1, False), ("HBM time, H100 (us)", "memory_us_h100", 1, False),
            ("ESTIMATE row pass, H100 (us; steady path)", "row_pass_us_h100", 1, False),
            ("ESTIMATE fraction of HBM bandwidth, H100 (steady path)", "fraction_of_hbm_h100", 1, True),
            ("ESTIMATE issue time, H200 (us)", "issue_us_h200", 1, False), ("HBM time, H200 (us)", "memory_us_h200", 1, False),
            ("ESTIMATE row pass, H200 (us; steady path)", "row_pass_us_h200", 1, False),
            ("ESTIMATE fraction of HBM bandwidth, H200 (steady path)", "fraction_of_hbm_h200", 1, True),
            ("ESTIMATE ceiling: fraction of HBM with a free hot loop (tails and latency only), H100", "ceiling_fraction_of_hbm_h100", 1, True),
            ("ESTIMATE ceiling: fraction of HBM with a free hot loop (tails and latency only), H200", "ceiling_fraction_of_hbm_h200", 1, True)]
    for dtype in ("f32", "f16", "bf16"):
        for title, key, digits, pct in rows:
            vals = []
            for _, s in sums:
                d = s.get(dtype)
                vals.append(fmt(d.get(key) if d else None, digits, pct))
            lines.append(f"| {dtype} | {title} | " + " | ".join(vals) + " |")
    for name, s in sums:
        notes = [f"{d}: {v['hot_loop_note']}" for d, v in s.items() if v and v.get("hot_loop_note")]
        if notes:
            lines += ["", f"{name}: hot loop not found — " + "; ".join(notes)]
    lines += ["", f"## Row pass by row shape, {cols[-1][0]} (ESTIMATE)", ""] + shape_lines(after, meta)

    for name, t in cols:
        lines += ["", f"## Row-pass hot loop, {name} ({t['label']})", "",
                  "| kernel | variant | regs | occupancy | loop | instr/element (path) | instr/element (ranked path) | static body size/element | loads in flight | breakdown per element (path) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for dtype in ("f32", "f16", "bf16"):
            for variant, e in sorted(t["row_pass"].get(dtype, {}).items()):
                h = e.get("hot_loop") or {}
                ranked = e.get("hot_loop_ranked") or {}
                if not h.get("found"):
                    lines.append(f"| {dtype} | {variant} | {e['registers']} | {fmt(e['occupancy'], 1, True)} | not found: {h.get('reason')} | | | | | |")
                    continue
                breakdown = ", ".join(f"{k} {v:.1f}" for k, v in h["classes"].items())
                lines.append(f"| {dtype} | {variant} | {e['registers']} | {fmt(e['occupancy'], 1, True)} | "
                             f"{h['loop'][0]:#x}-{h['loop'][1]:#x}, {h['elements_per_lane']} elements/lane/iteration"
                             f"{', inner loops ' + str(len(h['inner_loops'])) if h['inner_loops'] else ''} | "
                             f"{h['instructions_per_element']:.1f} | {fmt(ranked.get('instructions_per_element'), 1)} | "
                             f"{h['static_per_element']:.1f} | {h['loads_in_flight']} | {breakdown} |")
    for name, t in cols:
        lines += ["", f"## All kernels, {name} ({t['label']})", "",
                  "| source | kernel | dtype | variant | threads/block | registers | static smem (B) | stack (B) | spill st/ld (B) | blocks/SM | occupancy | limited by |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for k in t["kernels"]:
            lines.append(f"| {k['source']} | {k['kernel']} | {k['dtype'] or ''} | {k['variant']} | {k['threads'] or 'n/a'} | {k['registers']} | "
                         f"{k['smem']} | {k['stack']} | {k['spill_stores']}/{k['spill_loads']} | {fmt(k['blocks_per_sm'])} | "
                         f"{fmt(k['occupancy'], 1, True)} | {k['limiter'] or 'block size unknown'} |")
    lines += ["", "## Launches per step (static count from the source)", ""]
    for name, t in cols:
        l = t["launches"]
        if not l.get("found"):
            lines.append(f"- {name}: not found ({l.get('reason')})")
            continue
        lines.append(f"- {name}: {l['launches_min']}-{l['launches_max']} kernel launches per step (fast path): "
                     f"{', '.join(l['kernels'])}" + (f"; when rows are split: {', '.join(l['conditional_kernels'])}" if l['conditional_kernels'] else "")
                     + f"; other stream operations: {', '.join(l['other_stream_operations']) or 'none'}")
    lines += ["", "Counted from `saber_decode_step` in native/src/device/decode.cu and the `<<<` launches in the launchers it calls "
              "(kernels/*.cu, helpers followed one level; a launch on a line with `if`/`?` is conditional; reference-path "
              "kernels excluded). A static reading of the source, not a trace.",
              "", "## Whole step vs row pass (ESTIMATE from a latency model)", ""] + step_lines(after) + [
              "", "## The model and its assumptions", "",
              f"- Row pass: {ROWS} rows x {VOCAB} ids (G = {G_ROWS} rows of a batch, 256 of them active), one read of each logit.",
              "- Issue-bound time (a bound, given beside the model) = elements x (cycles per element and SM) / (SMs x clock), the "
              "cycles being the larger of the dispatch limit (instructions per element / (4 schedulers x 32 lanes): every "
              "scheduler issues one warp instruction per cycle) and the busiest pipe's (instructions of its class per element / "
              "its results per clock per SM: fp32 128; integer, compare/min/max and fp64 64; shuffles, votes, loads and stores "
              "32; conversions and MUFU 16, as we read the CUDA C++ Programming Guide's table for compute capability 9.0). "
              f"One clock for both GPUs: {CLOCK_GHZ} GHz (both boost to 1.98 GHz; a bandwidth-bound kernel on every SM is "
              "not assumed to hold it). 132 SMs each.",
              "- Memory time = bytes / peak HBM bandwidth (H100 3.35 TB/s, H200 4.8 TB/s); no L2 reuse, no partial-sector waste.",
              "- The row-pass time (the model behind every fraction of HBM): the work items (row, split) as plan_row_split "
              "cuts the rows for the kernel's resident blocks, in waves of SMs x resident blocks. A wave streams for its "
              "busiest SM's chunks over the SM's throughput, from an exact mean value analysis of a closed queueing network "
              "per scheduler: its warps (a quarter of the SM's), each cycling through a delay of the DRAM latency "
              f"({DRAM_LATENCY_NS:.0f} ns assumed loaded; the loads of a chunk not issued ahead are waited for every "
              "iteration) and two stations, the scheduler (the binding limit's cycles per chunk, x4 for one scheduler) and a "
              "quarter of the SM's share of HBM bandwidth. So the latency, the issue rate and the bandwidth act together, not "
              "as separate caps. Each item then has its tail: finishing the row in the block (with one split: a read of the "
              f"partials, the chunk terms' {STEP_MODEL['dadd_cycles']}-cycle dependent FP64 additions in chunk order by one "
              f"thread between two barriers of {STEP_MODEL['barrier_cycles']} cycles, then finish_row: two round trips of "
              f"{STEP_MODEL['round_trip_us']} us, the same finishing the step estimate counts) or, with splits, writing its "
              "split's summary (two barriers) and arriving at the row's counter (a barrier, a release fence and an atomic: "
              "two round trips, and a barrier); the last split's block to arrive finishes the row, counted once a wave on the busiest "
              "SM. A tree from before the last-block merge (its step launches combine_row_splits_kernel) is modelled as it "
              f"ran: that kernel after a {STEP_MODEL['launch_gap_us']} us launch gap finishes the rows, grid-stride, each "
              "after one more round trip for its splits' summaries. "
              "Fraction of HBM = memory time / row-pass time.",
              "- Instructions per element are those of the steady-state path of one hot-loop iteration (the heuristic below), "
              "for a good row after the best two are established: no chunk beats the running best (so no ranking or offer "
              "and, at T > 0, no Gumbel draw), every exp term computed. The ranked path (rule f reversed: every chunk "
              "ranked) is given beside it as the other bound. The summary's fractions are the steady path's (the best case); "
              "the by-shape table weighs the two paths by each shape's census. Row setup, the block "
              "reduction and finishing a row are not in the instructions per element (they are per row); the row-pass "
              "time adds them as each item's tail. Sampled and entropy "
              "variants are listed in the hot-loop tables; their steady state adds the entropy terms and, at T > 0, the "
              "per-chunk bound test.",
              "- Occupancy: sm_90, 65536 registers (allocated per warp in units of 256), 2048 threads, 228 KiB shared memory "
              "(plus 1 KiB reserved per block), 32 blocks per SM; block size from `__launch_bounds__` or the launch.",
              "", "## How the hot loop is found", "", "```", __doc__.split("How the hot loop is found", 1)[1].strip(), "```"]
    return "\n".join(lines) + "\n"


def json_summary(trees, meta):
    after = summary(trees[-1])
    row = {}
    for dtype in ("f32", "f16", "bf16"):
        d = after.get(dtype)
        row[dtype] = None if d is None else {k: d[k] for k in (
            "registers", "occupancy", "instructions_per_element", "loads_in_flight", "fraction_of_hbm_h100", "fraction_of_hbm_h200",
            "ranked_instructions_per_element", "loads_ahead", "static_instructions_per_element", "kernel", "issue_limit", "issue_us_h100", "memory_us_h100", "issue_us_h200", "memory_us_h200",
            "row_pass_us_h100", "row_pass_us_h200", "ceiling_fraction_of_hbm_h100", "ceiling_fraction_of_hbm_h200")}
    steps, reason = step_estimate(trees[-1])
    shapes = by_shape(trees[-1], meta.get("census"))
    census = meta.get("census")
    out = {"date": meta["date"], "arch": "sm_90", "clock_ghz": CLOCK_GHZ, "row_pass": row,
           "row_pass_by_shape": shapes,
           "row_pass_by_shape_census": None if census is None else {k: census[k] for k in ("vocabulary", "rows", "splits", "binary")},
           "row_pass_by_shape_note": meta.get("census_reason") or (
               "ESTIMATE: instructions per element weigh the hot loop's steady and ranked paths by the shape's ranked fraction "
               "(host emulation); fractions of HBM from the row-pass model (the markdown report's section on the model)."),
           "targets_on_random_rows": None if shapes is None else {
               f"{g}_{d}": {"target": t, "fraction": shapes["random"][d][f"fraction_of_hbm_{g}"],
                            "met": shapes["random"][d][f"fraction_of_hbm_{g}"] >= t} for g, goals in TARGETS.items() for d, t in goals.items()
               if shapes["random"][d] is not None},
           "step_over_row_pass": {k: (steps[k]["ratio"] if steps else None) for k in ("g256", "g1024")},
           "step_over_row_pass_parts": steps, "step_over_row_pass_note": reason or STEP_NOTE, "estimate": True, "revision": trees[-1]["label"],
           "launches_per_step": {k: trees[-1]["launches"].get(k) for k in ("launches_min", "launches_max")}}
    if len(trees) > 1:
        out["before"] = {"revision": trees[0]["label"], "row_pass": {
            d: (None if v is None else {k: v[k] for k in ("registers", "occupancy", "instructions_per_element",
                                                          "ranked_instructions_per_element", "loads_in_flight", "loads_ahead",
                                                          "fraction_of_hbm_h100", "fraction_of_hbm_h200")})
            for d, v in summary(trees[0]).items()}}
    return out


def git(*args, cwd):
    return run(["git", *args], cwd=cwd).strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", help="git revision to compare against (before); the working tree is after")
    parser.add_argument("--md", help="write the markdown report here (default: stdout)")
    parser.add_argument("--json", help="write the JSON summary here")
    parser.add_argument("--note", action="append", default=[], help="a line of text added to the markdown report")
    parser.add_argument("--date", default=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d"))
    parser.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parser.add_argument("--host-tests", help="the built saber_host_tests that counts ranked chunks per row shape "
                                             "(default: the first build/*/native/saber_host_tests)")
    args = parser.parse_args()

    nvcc = os.environ.get("CUDACXX") or find_tool("nvcc")
    if not nvcc:
        log("nvcc not found (tools/install-cuda-toolkit.sh installs it); no report")
        return 2
    _, nvcc_line = nvcc_version(nvcc)
    root = args.root
    try:
        head = git("rev-parse", "--short", "HEAD", cwd=root)
        dirty = bool(git("status", "--porcelain", "--", "native", cwd=root))
    except (RuntimeError, OSError):
        head, dirty = "an unknown revision (not a git checkout)", False
    trees = []
    worktree = None
    try:
        if args.base:
            worktree = tempfile.mkdtemp(prefix="kernel_report_base_")
            os.rmdir(worktree)
            git("worktree", "add", "--detach", worktree, args.base, cwd=root)
            base_label = git("rev-parse", "--short", args.base, cwd=root)
            log(f"compiling {base_label} (before)")
            trees.append(analyse_tree(worktree, nvcc, f"{base_label} (--base {args.base})"))
        log(f"compiling the working tree at {head}{' (native/ modified)' if dirty else ''} (after)")
        trees.append(analyse_tree(root, nvcc, f"working tree at {head}{' + uncommitted native/ changes' if dirty else ''}"))
    finally:
        if worktree:
            subprocess.run(["git", "worktree", "remove", "--force", worktree], cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            shutil.rmtree(worktree, ignore_errors=True)
    meta = dict(date=args.date, generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                command="python3 bench/kernel_report.py " + " ".join(
                    '"<note>"' if i > 1 and sys.argv[i - 1] == "--note" else a for i, a in enumerate(sys.argv) if i > 0),
                machine=f"{platform.node() or 'unknown'}, {platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
                nvcc=nvcc_line, notes=args.note)
    meta["census"], meta["census_reason"] = run_census(root, args.host_tests)
    text = markdown(trees, meta)
    if args.md:
        with open(args.md, "w") as f:
            f.write(text)
        log(f"wrote {args.md}")
    else:
        sys.stdout.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(json_summary(trees, meta), f, indent=2)
            f.write("\n")
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
