#!/usr/bin/env python3
"""Writes a small LLaDA-architecture masked diffusion LM as ONNX; alone, with SEEDED RANDOM weights.

Python standard library only, so that it runs on a bare machine:
the ONNX file is written with a minimal protobuf encoder, and a literal pure-Python forward pass of
the same weights writes reference logits that the engine tests compare ONNX Runtime's output with.

Architecture (LLaDA's, scaled down): token embedding; N bidirectional transformer blocks of
RMSNorm -> multi-head self-attention with rotary position embeddings (rotate-half convention) ->
residual, RMSNorm -> SwiGLU feed-forward -> residual; final RMSNorm; linear head to the vocabulary.
Interface: inputs `input_ids` int64 [batch, sequence] and (unless --no-attention-mask) `attention_mask` int64
[batch, sequence], 1 = token, 0 = padding on the left -> output `logits` float32 [batch, sequence, V].
--weights-from re-exports an existing model's weights (read back with a minimal protobuf reader), e.g. to give
the trained models/tiny the attention mask without retraining.

    python3 tools/make_tiny_model.py [--out models/tiny] [--seed 20261123] [--weights-from MODEL] [--no-attention-mask]

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


# Protobuf reading (the subset this module writes), to carry trained weights into a new graph.
def read_varint(data, at):
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def read_fields(data):
    """(field number, wire type, value) of one message: varints as ints, length-delimited as bytes, fixed32 as bytes."""
    at, fields = 0, []
    while at < len(data):
        key, at = read_varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = read_varint(data, at)
        elif wire == 2:
            length, at = read_varint(data, at)
            value, at = data[at:at + length], at + length
        elif wire == 5:
            value, at = data[at:at + 4], at + 4
        elif wire == 1:
            value, at = data[at:at + 8], at + 8
        else:
            raise ValueError("unsupported protobuf wire type %d" % wire)
        fields.append((number, wire, value))
    return fields


def read_model(path):
    """The float32 initialisers (name -> (dims, values)) and metadata of a model this module wrote.

    ModelProto: 7 graph, 14 metadata_props (1 key, 2 value); GraphProto: 5 initializer;
    TensorProto: 1 dims, 2 data_type, 4 float_data (packed or not), 8 name, 9 raw_data.
    """
    with open(path, "rb") as f:
        model = read_fields(f.read())
    metadata, tensors = {}, {}
    for number, _, value in model:
        if number == 14:
            entry = {n: v.decode("utf-8") for n, _, v in read_fields(value)}
            metadata[entry.get(1, "")] = entry.get(2, "")
    graph = [v for n, _, v in model if n == 7]
    if len(graph) != 1:
        raise ValueError("%s: expected one graph, found %d" % (path, len(graph)))
    for number, _, value in read_fields(graph[0]):
        if number != 5:
            continue
        dims, data_type, name, values = [], None, None, []
        for n, wire, v in read_fields(value):
            if n == 1:
                dims.append(v)
            elif n == 2:
                data_type = v
            elif n == 8:
                name = v.decode("utf-8")
            elif n == 9:
                values = v
            elif n == 4:
                values = (values if isinstance(values, list) else []) + (list(struct.unpack("<%df" % (len(v) // 4), v)) if wire == 2 else list(struct.unpack("<f", v)))
        if data_type != FLOAT:
            continue
        if isinstance(values, bytes):
            values = list(struct.unpack("<%df" % (len(values) // 4), values))
        count = 1
        for d in dims:
            count *= d
        if len(values) != count:
            raise ValueError("%s: initialiser %s holds %d values for dims %s" % (path, name, len(values), dims))
        tensors[name] = (dims, values)
    return tensors, metadata


def read_weights(path):
    """The trainable weights (the names make_weights uses, in its order) and the metadata of a written model."""
    tensors, metadata = read_model(path)
    names = list(make_weights_names())
    missing = [n for n in names if n not in tensors]
    if missing:
        raise ValueError("%s lacks the weights %s" % (path, ", ".join(missing)))
    return {n: tensors[n][1] for n in names}, metadata


def make_weights_names():
    yield "embed"
    for layer in range(LAYERS):
        p = "layer%d." % layer
        yield p + "attn_norm"
        for name in ("wq", "wk", "wv", "wo"):
            yield p + name
        for name in ("ffn_norm", "w_gate", "w_up", "w_down"):
            yield p + name
    yield "final_norm"
    yield "lm_head"


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


def build_onnx(w, description, attention_mask=False):
    """The ONNX ModelProto bytes; with attention_mask, a second input `attention_mask` int64 [batch, sequence]
    (1 = token, 0 = left padding): per-row positions cumsum(mask) - 1 clamped at 0, padded keys masked out."""
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
    if not attention_mask:
        g.constant("two", [1], [2], INT64)   # (only the unmasked graph slices the tables by the sequence length)
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

    if attention_mask:
        g.constant("masked_bias", [], [-1e9])
        g.constant("one_float", [], [1.0])
        g.constant("zero_scalar", [], [0], INT64)
        g.constant("axis_one", [], [1], INT64)
        g.constant("axes_one_two", [2], [1, 2], INT64)
        # Per-row positions: the i-th real token of a row is at position i, whatever padding precedes it.
        positions = g.op("Max", g.op("Sub", g.op("CumSum", "attention_mask", "axis_one"), "one"), "zero_scalar")
        cos = g.op("Unsqueeze", g.op("Gather", "rope_cos", positions, axis=0), "one")    # [b, 1, s, head_dim]
        sin = g.op("Unsqueeze", g.op("Gather", "rope_sin", positions, axis=0), "one")
        # Padded keys: -1e9 added to their scores (not -inf: a row of only padding stays finite).
        keep = g.op("Cast", "attention_mask", to=FLOAT)
        key_bias = g.op("Unsqueeze", g.op("Mul", g.op("Sub", "one_float", keep), "masked_bias"), "axes_one_two")   # [b, 1, 1, s]
    else:
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
        if attention_mask:
            scores = g.op("Add", scores, key_bias)
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
    if attention_mask:
        graph += field_bytes(11, value_info("attention_mask", INT64, ["batch", "sequence"]))
    graph += field_bytes(12, value_info("logits", FLOAT, ["batch", "sequence", V]))

    def metadata(key, value):
        return field_bytes(14, field_bytes(1, key) + field_bytes(2, value))

    model = field_varint(1, 8)                                           # ir_version 8
    model += field_bytes(2, "saber-native tools/make_tiny_model.py") + field_bytes(3, "1")
    model += field_bytes(7, graph)
    model += field_bytes(8, field_bytes(1, "") + field_varint(2, 17))   # opset 17
    model += metadata("mask_id", str(len(VOCABULARY) - 1)) + metadata("max_positions", str(MAX_POSITIONS))
    model += metadata("weights", description)
    if attention_mask:
        model += metadata("attention_mask", "left-padded: input attention_mask int64 [batch, sequence], 1 = token, 0 = padding on the left "
                                            "(positions count tokens only, so padding after the tokens is excluded too)")
    return model


def minimal_model(input_type, output_name, mask_type=None, mask_dims=("batch", "sequence")):
    """A one-node model with the given input type and output name (and, with mask_type, an unused
    attention_mask input of that type and shape), for the engine's signature checks."""
    graph = field_bytes(1, node("Identity", ["input_ids"], [output_name], "identity")) + field_bytes(2, "signature-test")
    graph += field_bytes(11, value_info("input_ids", input_type, ["batch", "sequence"]))
    if mask_type is not None:
        graph += field_bytes(11, value_info("attention_mask", mask_type, list(mask_dims)))
    graph += field_bytes(12, value_info(output_name, input_type, ["batch", "sequence"]))
    return field_varint(1, 8) + field_bytes(7, graph) + field_bytes(8, field_bytes(1, "") + field_varint(2, 17))


def lookup_model(vocabulary=16):
    """logits[b, s, :] = table[input_ids[b, s]]: a model WITHOUT an attention mask whose logits depend on the
    token only (mask_id = vocabulary - 1), for the engine's equal-length grouping path."""
    table = rounded([math.sin(1.0 + 0.37 * i + 0.11 * i * i) for i in range(vocabulary * vocabulary)])
    graph = field_bytes(1, node("Gather", ["table", "input_ids"], ["logits"], "lookup", axis=0)) + field_bytes(2, "lookup-test")
    graph += field_bytes(5, tensor("table", [vocabulary, vocabulary], FLOAT, table))
    graph += field_bytes(11, value_info("input_ids", INT64, ["batch", "sequence"]))
    graph += field_bytes(12, value_info("logits", FLOAT, ["batch", "sequence", vocabulary]))
    model = field_varint(1, 8) + field_bytes(7, graph) + field_bytes(8, field_bytes(1, "") + field_varint(2, 17))
    return model + field_bytes(14, field_bytes(1, "mask_id") + field_bytes(2, str(vocabulary - 1)))


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


def reference_forward(w, ids, mask=None):
    """Logits [len(ids), V] of one row; with mask (1 = token, 0 = padding), positions cumsum(mask) - 1
    clamped at 0 and padded keys' scores lowered by 1e9, as the attention_mask graph does."""
    V = len(VOCABULARY)
    s = len(ids)
    if mask is None:
        mask = [1] * s
    positions, seen = [], 0
    for m in mask:
        seen += m
        positions.append(max(seen - 1, 0))
    key_bias = [(1 - m) * -1e9 for m in mask]
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

            qs = [rope(q[i], positions[i]) for i in range(s)]
            ks = [rope(k[i], positions[i]) for i in range(s)]
            for i in range(s):
                scores = [sum(a * b for a, b in zip(qs[i], ks[j])) / math.sqrt(HEAD_DIM) + key_bias[j] for j in range(s)]
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
    parser.add_argument("--weights-from", metavar="MODEL",
                        help="re-export the weights and 'weights' metadata of MODEL (a model.onnx this module wrote, e.g. the trained "
                             "models/tiny) instead of seeded random ones; reads the file before --out is written")
    parser.add_argument("--no-attention-mask", action="store_true",
                        help="write the graph without the attention_mask input (input_ids only, as before issue 14)")
    args = parser.parse_args()
    if args.test_models:
        os.makedirs(args.test_models, exist_ok=True)
        models = (("float-input.onnx", minimal_model(FLOAT, "logits")), ("no-logits-output.onnx", minimal_model(INT64, "scores")),
                  ("float-mask.onnx", minimal_model(INT64, "logits", FLOAT)), ("flat-mask.onnx", minimal_model(INT64, "logits", INT64, ["batch"])),
                  ("lookup-no-mask.onnx", lookup_model()))
        for name, model in models:
            with open(os.path.join(args.test_models, name), "wb") as f:
                f.write(model)
    if args.weights_from:
        weights, metadata = read_weights(args.weights_from)
        description = metadata.get("weights", "read from %s" % os.path.basename(args.weights_from))
    else:
        weights, description = make_weights(args.seed), "seeded random (untrained), seed %d" % args.seed
    write_model(args.out, weights, description, args.seed, attention_mask=not args.no_attention_mask)


def write_model(out, weights, description, seed, attention_mask=True):
    """model.onnx, tokenizer.json and reference_logits.json for these weights (also the training script's output).

    With attention_mask (the default), the reference also holds a left-padded batch of the two cases, whose
    expected logits are those of each row UNPADDED (checked here against the literal padded forward pass)."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "model.onnx"), "wb") as f:
        f.write(build_onnx(weights, description, attention_mask))
    with open(os.path.join(out, "tokenizer.json"), "w") as f:
        json.dump({"type": "characters", "vocabulary": VOCABULARY, "mask": MASK, "eos": "<|eos|>", "unknown": "<|unk|>"}, f, indent=1)
        f.write("\n")

    mask = len(VOCABULARY) - 1
    cases = [encode("def f(x):") + [mask] * 5, encode("print(") + [mask, mask] + encode(")\n")]
    unpadded = [reference_forward(weights, ids) for ids in cases]
    reference = {"seed": seed, "cases": [{"input_ids": ids, "logits": [[round(v, 6) for v in row] for row in logits]}
                                         for ids, logits in zip(cases, unpadded)]}
    if attention_mask:
        # Two layouts: all padding on the left; and OnnxDenoiser's (left in multiples of 16, the rest on the right).
        batches = []
        for width, alignment, layout in ((max(len(ids) for ids in cases), None, "left"),
                                         (30, 16, "left in multiples of 16, the rest on the right (OnnxDenoiser's layout)")):
            rows, masks = [], []
            for ids, logits in zip(cases, unpadded):
                padding = width - len(ids)
                left = padding if alignment is None else padding // alignment * alignment
                row = [mask] * left + ids + [mask] * (padding - left)        # padded with the mask id: any id would do
                row_mask = [0] * left + [1] * len(ids) + [0] * (padding - left)
                if padding:   # the literal forward pass with the mask gives the unpadded row's logits
                    padded = reference_forward(weights, row, row_mask)[left:left + len(ids)]
                    worst = max(abs(a - b) for p, u in zip(padded, logits) for a, b in zip(p, u))
                    if worst > 1e-9:
                        raise AssertionError("padded row differs from the unpadded one by %g" % worst)
                rows.append(row)
                masks.append(row_mask)
            batches.append({"layout": layout, "input_ids": rows, "attention_mask": masks,
                            "logits": [[[round(v, 6) for v in r] for r in logits] for logits in unpadded],
                            "logits_note": "per row, the logits of its real (mask 1) positions only, from the literal forward pass of the row UNPADDED"})
        reference["padded_batches"] = batches
    with open(os.path.join(out, "reference_logits.json"), "w") as f:
        json.dump(reference, f)
        f.write("\n")
    print("wrote %s: model.onnx (%d parameters; %s), tokenizer.json (V = %d), reference_logits.json"
          % (out, sum(len(v) for v in weights.values()), description, len(VOCABULARY)))


if __name__ == "__main__":
    main()
