#!/usr/bin/env python3
"""Writes a small LLaDA-architecture masked diffusion LM as ONNX; alone, with SEEDED RANDOM weights.

Python standard library only, so that it runs on a bare machine:
the ONNX file is written with a minimal protobuf encoder, and a literal pure-Python forward pass of
the same weights writes reference logits that the engine tests compare ONNX Runtime's output with.

Architecture (LLaDA's, scaled down): token embedding; N bidirectional transformer blocks of
RMSNorm -> multi-head self-attention with rotary position embeddings (rotate-half convention) ->
residual, RMSNorm -> SwiGLU feed-forward -> residual; final RMSNorm; linear head to the vocabulary.
Interface: input `input_ids` int64 [batch, sequence] -> output `logits` float32 [batch, sequence, V].

    python3 tools/make_tiny_model.py [--out models/tiny] [--seed 20261123]

The same seed gives the same bytes. The shipped models/tiny is trained: tools/train_tiny_model.py
(PyTorch) trains these parameters and writes them through this module's write_model; run this
script alone for the untrained stand-in (and, with --test-models, the signature-test models).
"""
import argparse
import json
import math
import os
import random
import struct

# ---------------------------------------------------------------------------------------------
# Vocabulary: characters, plus end-of-text, unknown and mask.
SPECIALS = ["<|eos|>", "<|unk|>"]
CHARACTERS = ["\t", "\n"] + [chr(c) for c in range(32, 127)]
MASK = "<|mask|>"
VOCABULARY = SPECIALS + CHARACTERS + [MASK]

D_MODEL, HEADS, LAYERS, D_FF, MAX_POSITIONS = 128, 4, 4, 352, 512
HEAD_DIM = D_MODEL // HEADS
ROPE_THETA = 10000.0
EPSILON = 1e-5


# ---------------------------------------------------------------------------------------------
# Protobuf wire format (the subset ONNX needs).
def varint(value):
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field_varint(number, value):
    return varint(number << 3) + varint(value)


def field_bytes(number, payload):
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return varint((number << 3) | 2) + varint(len(payload)) + payload


def field_float(number, value):
    return varint((number << 3) | 5) + struct.pack("<f", value)


# ONNX field numbers (onnx/onnx.proto) and enum values.
FLOAT, INT64 = 1, 7                      # TensorProto.DataType
ATTR_FLOAT, ATTR_INT, ATTR_INTS = 1, 2, 7    # AttributeProto.AttributeType


def tensor(name, dims, data_type, values):
    fmt = "<%d%s" % (len(values), "f" if data_type == FLOAT else "q")
    body = b"".join(field_varint(1, d) for d in dims)
    body += field_varint(2, data_type) + field_bytes(8, name) + field_bytes(9, struct.pack(fmt, *values))
    return body


def attribute(name, value):
    body = field_bytes(1, name)
    if isinstance(value, float):
        return body + field_float(2, value) + field_varint(20, ATTR_FLOAT)
    if isinstance(value, int):
        return body + field_varint(3, value) + field_varint(20, ATTR_INT)
    return body + b"".join(field_varint(8, v) for v in value) + field_varint(20, ATTR_INTS)


def node(op_type, inputs, outputs, name, **attributes):
    body = b"".join(field_bytes(1, i) for i in inputs) + b"".join(field_bytes(2, o) for o in outputs)
    body += field_bytes(3, name) + field_bytes(4, op_type)
    body += b"".join(field_bytes(5, attribute(k, v)) for k, v in attributes.items())
    return body


def value_info(name, element_type, dims):
    shape = b"".join(field_bytes(1, field_varint(1, d) if isinstance(d, int) else field_bytes(2, d)) for d in dims)
    tensor_type = field_varint(1, element_type) + field_bytes(2, shape)
    return field_bytes(1, name) + field_bytes(2, field_bytes(1, tensor_type))


# ---------------------------------------------------------------------------------------------
class Graph:
    """Collects nodes and initialisers; names are generated so the builder code reads like the maths."""

    def __init__(self):
        self.nodes, self.initializers, self.count = [], [], 0

    def constant(self, name, dims, values, data_type=FLOAT):
        self.initializers.append(tensor(name, dims, data_type, values))
        return name

    def op(self, op_type, *inputs, **attributes):
        self.count += 1
        output = "%s_%d" % (op_type.lower(), self.count)
        self.nodes.append(node(op_type, list(inputs), [output], "n%d_%s" % (self.count, op_type), **attributes))
        return output


def rounded(values):
    """float32 rounding, so the Python reference uses exactly the weights the ONNX file holds."""
    return list(struct.unpack("<%df" % len(values), struct.pack("<%df" % len(values), *values)))


def make_weights(seed):
    rng = random.Random(seed)

    def normal(count, std):
        return rounded([rng.gauss(0.0, std) for _ in range(count)])

    V = len(VOCABULARY)
    w = {"embed": normal(V * D_MODEL, 1.0)}
    for layer in range(LAYERS):
        p = "layer%d." % layer
        w[p + "attn_norm"] = rounded([1.0 + 0.1 * rng.gauss(0.0, 1.0) for _ in range(D_MODEL)])
        for name in ("wq", "wk", "wv", "wo"):
            w[p + name] = normal(D_MODEL * D_MODEL, 1.0 / math.sqrt(D_MODEL))
        w[p + "ffn_norm"] = rounded([1.0 + 0.1 * rng.gauss(0.0, 1.0) for _ in range(D_MODEL)])
        w[p + "w_gate"] = normal(D_MODEL * D_FF, 1.0 / math.sqrt(D_MODEL))
        w[p + "w_up"] = normal(D_MODEL * D_FF, 1.0 / math.sqrt(D_MODEL))
        w[p + "w_down"] = normal(D_FF * D_MODEL, 1.0 / math.sqrt(D_FF))
    w["final_norm"] = rounded([1.0] * D_MODEL)
    # A wider head than 1/sqrt(d): random logits then spread over a few units, so confidences vary.
    w["lm_head"] = normal(D_MODEL * V, 3.0 / math.sqrt(D_MODEL))
    return w


def rotary_tables():
    cos, sin = [], []
    for position in range(MAX_POSITIONS):
        for i in range(HEAD_DIM):
            frequency = ROPE_THETA ** (-2.0 * (i % (HEAD_DIM // 2)) / HEAD_DIM)
            cos.append(math.cos(position * frequency))
            sin.append(math.sin(position * frequency))
    return rounded(cos), rounded(sin)


def build_onnx(w, description):
    V = len(VOCABULARY)
    g = Graph()
    cos_table, sin_table = rotary_tables()
    g.constant("rope_cos", [MAX_POSITIONS, HEAD_DIM], cos_table)
    g.constant("rope_sin", [MAX_POSITIONS, HEAD_DIM], sin_table)
    g.constant("epsilon", [], [EPSILON])
    g.constant("attention_scale", [], [1.0 / math.sqrt(HEAD_DIM)])
    g.constant("heads_shape", [4], [0, 0, HEADS, HEAD_DIM], INT64)
    g.constant("model_shape", [3], [0, 0, D_MODEL], INT64)
    g.constant("zero", [1], [0], INT64)
    g.constant("one", [1], [1], INT64)
    g.constant("two", [1], [2], INT64)
    g.constant("three", [1], [3], INT64)
    g.constant("half", [1], [HEAD_DIM // 2], INT64)
    g.constant("head_dim", [1], [HEAD_DIM], INT64)
    for name, values in w.items():
        dims = {"embed": [V, D_MODEL], "lm_head": [D_MODEL, V]}.get(name)
        if dims is None:
            short = name.split(".")[-1]
            dims = {"wq": [D_MODEL, D_MODEL], "wk": [D_MODEL, D_MODEL], "wv": [D_MODEL, D_MODEL], "wo": [D_MODEL, D_MODEL],
                    "w_gate": [D_MODEL, D_FF], "w_up": [D_MODEL, D_FF], "w_down": [D_FF, D_MODEL]}.get(short, [D_MODEL])
        g.constant(name, dims, values)

    # Rotary tables cut to the sequence length: [s, head_dim].
    length = g.op("Slice", g.op("Shape", "input_ids"), "one", "two")
    cos = g.op("Slice", "rope_cos", "zero", length, "zero")
    sin = g.op("Slice", "rope_sin", "zero", length, "zero")

    def rms_norm(x, weight):
        mean_square = g.op("ReduceMean", g.op("Mul", x, x), axes=[-1], keepdims=1)
        return g.op("Mul", g.op("Div", x, g.op("Sqrt", g.op("Add", mean_square, "epsilon"))), weight)

    def heads(x):   # [b, s, d] -> [b, H, s, head_dim]
        return g.op("Transpose", g.op("Reshape", x, "heads_shape"), perm=[0, 2, 1, 3])

    def rotate(x):  # x·cos + rotate_half(x)·sin, rotate_half(x) = (-x2, x1)
        x1 = g.op("Slice", x, "zero", "half", "three")
        x2 = g.op("Slice", x, "half", "head_dim", "three")
        rotated = g.op("Concat", g.op("Neg", x2), x1, axis=-1)
        return g.op("Add", g.op("Mul", x, cos), g.op("Mul", rotated, sin))

    x = g.op("Gather", "embed", "input_ids", axis=0)
    for layer in range(LAYERS):
        p = "layer%d." % layer
        h = rms_norm(x, p + "attn_norm")
        q = rotate(heads(g.op("MatMul", h, p + "wq")))
        k = rotate(heads(g.op("MatMul", h, p + "wk")))
        v = heads(g.op("MatMul", h, p + "wv"))
        scores = g.op("Mul", g.op("MatMul", q, g.op("Transpose", k, perm=[0, 1, 3, 2])), "attention_scale")
        attended = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)   # bidirectional: no causal mask
        merged = g.op("Reshape", g.op("Transpose", attended, perm=[0, 2, 1, 3]), "model_shape")
        x = g.op("Add", x, g.op("MatMul", merged, p + "wo"))
        h = rms_norm(x, p + "ffn_norm")
        gate = g.op("MatMul", h, p + "w_gate")
        activated = g.op("Mul", g.op("Mul", gate, g.op("Sigmoid", gate)), g.op("MatMul", h, p + "w_up"))
        x = g.op("Add", x, g.op("MatMul", activated, p + "w_down"))
    logits = g.op("MatMul", rms_norm(x, "final_norm"), "lm_head")
    g.nodes.append(node("Identity", [logits], ["logits"], "output"))

    graph = b"".join(field_bytes(1, n) for n in g.nodes) + field_bytes(2, "saber-tiny")
    graph += b"".join(field_bytes(5, t) for t in g.initializers)
    graph += field_bytes(11, value_info("input_ids", INT64, ["batch", "sequence"]))
    graph += field_bytes(12, value_info("logits", FLOAT, ["batch", "sequence", V]))

    def metadata(key, value):
        return field_bytes(14, field_bytes(1, key) + field_bytes(2, value))

    model = field_varint(1, 8)                                           # ir_version 8
    model += field_bytes(2, "saber-native tools/make_tiny_model.py") + field_bytes(3, "1")
    model += field_bytes(7, graph)
    model += field_bytes(8, field_bytes(1, "") + field_varint(2, 17))   # opset 17
    model += metadata("mask_id", str(len(VOCABULARY) - 1)) + metadata("max_positions", str(MAX_POSITIONS))
    model += metadata("weights", description)
    return model


def minimal_model(input_type, output_name):
    """A one-node model with the given input type and output name, for the engine's signature checks."""
    graph = field_bytes(1, node("Identity", ["input_ids"], [output_name], "identity")) + field_bytes(2, "signature-test")
    graph += field_bytes(11, value_info("input_ids", input_type, ["batch", "sequence"]))
    graph += field_bytes(12, value_info(output_name, input_type, ["batch", "sequence"]))
    return field_varint(1, 8) + field_bytes(7, graph) + field_bytes(8, field_bytes(1, "") + field_varint(2, 17))


# ---------------------------------------------------------------------------------------------
# The literal forward pass (double precision on the float32 weights), for the reference logits.
def matmul(x, w, n_in, n_out):
    return [[sum(row[i] * w[i * n_out + j] for i in range(n_in)) for j in range(n_out)] for row in x]


def rms(x, weight):
    out = []
    for row in x:
        scale = 1.0 / math.sqrt(sum(v * v for v in row) / len(row) + EPSILON)
        out.append([v * scale * weight[i] for i, v in enumerate(row)])
    return out


def reference_forward(w, ids):
    V = len(VOCABULARY)
    s = len(ids)
    cos_table, sin_table = rotary_tables()
    x = [w["embed"][t * D_MODEL:(t + 1) * D_MODEL] for t in ids]
    for layer in range(LAYERS):
        p = "layer%d." % layer
        h = rms(x, w[p + "attn_norm"])
        q, k, v = (matmul(h, w[p + n], D_MODEL, D_MODEL) for n in ("wq", "wk", "wv"))
        out = [[0.0] * D_MODEL for _ in range(s)]
        for head in range(HEADS):
            lo = head * HEAD_DIM

            def rope(vector, position):
                half = HEAD_DIM // 2
                part = vector[lo:lo + HEAD_DIM]
                rotated = [-part[i + half] for i in range(half)] + [part[i] for i in range(half)]
                c = cos_table[position * HEAD_DIM:(position + 1) * HEAD_DIM]
                n = sin_table[position * HEAD_DIM:(position + 1) * HEAD_DIM]
                return [part[i] * c[i] + rotated[i] * n[i] for i in range(HEAD_DIM)]

            qs = [rope(q[i], i) for i in range(s)]
            ks = [rope(k[i], i) for i in range(s)]
            for i in range(s):
                scores = [sum(a * b for a, b in zip(qs[i], ks[j])) / math.sqrt(HEAD_DIM) for j in range(s)]
                top = max(scores)
                weights = [math.exp(z - top) for z in scores]
                total = sum(weights)
                for d in range(HEAD_DIM):
                    out[i][lo + d] = sum(weights[j] * v[j][lo + d] for j in range(s)) / total
        attended = matmul(out, w[p + "wo"], D_MODEL, D_MODEL)
        x = [[a + b for a, b in zip(r, t)] for r, t in zip(x, attended)]
        h = rms(x, w[p + "ffn_norm"])
        gate = matmul(h, w[p + "w_gate"], D_MODEL, D_FF)
        up = matmul(h, w[p + "w_up"], D_MODEL, D_FF)
        activated = [[gv / (1.0 + math.exp(-gv)) * uv for gv, uv in zip(gr, ur)] for gr, ur in zip(gate, up)]
        down = matmul(activated, w[p + "w_down"], D_FF, D_MODEL)
        x = [[a + b for a, b in zip(r, t)] for r, t in zip(x, down)]
    return matmul(rms(x, w["final_norm"]), w["lm_head"], D_MODEL, V)


def encode(text):
    unknown = VOCABULARY.index("<|unk|>")
    return [VOCABULARY.index(c) if c in CHARACTERS else unknown for c in text]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "models", "tiny"))
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--test-models", help="also write the signature-test models into this directory")
    args = parser.parse_args()
    if args.test_models:
        os.makedirs(args.test_models, exist_ok=True)
        for name, model in (("float-input.onnx", minimal_model(FLOAT, "logits")), ("no-logits-output.onnx", minimal_model(INT64, "scores"))):
            with open(os.path.join(args.test_models, name), "wb") as f:
                f.write(model)
    write_model(args.out, make_weights(args.seed), "seeded random (untrained), seed %d" % args.seed, args.seed)


def write_model(out, weights, description, seed):
    """model.onnx, tokenizer.json and reference_logits.json for these weights (also the training script's output)."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "model.onnx"), "wb") as f:
        f.write(build_onnx(weights, description))
    with open(os.path.join(out, "tokenizer.json"), "w") as f:
        json.dump({"type": "characters", "vocabulary": VOCABULARY, "mask": MASK, "eos": "<|eos|>", "unknown": "<|unk|>"}, f, indent=1)
        f.write("\n")

    mask = len(VOCABULARY) - 1
    cases = [encode("def f(x):") + [mask] * 5, encode("print(") + [mask, mask] + encode(")\n")]
    reference = {"seed": seed, "cases": [{"input_ids": ids, "logits": [[round(v, 6) for v in row] for row in reference_forward(weights, ids)]}
                                         for ids in cases]}
    with open(os.path.join(out, "reference_logits.json"), "w") as f:
        json.dump(reference, f)
        f.write("\n")
    print("wrote %s: model.onnx (%d parameters; %s), tokenizer.json (V = %d), reference_logits.json"
          % (out, sum(len(v) for v in weights.values()), description, len(VOCABULARY)))


if __name__ == "__main__":
    main()
