"""Writes all-MiniLM-L6-v2 as an fp32 ONNX graph for ONNX Runtime, from the same model.safetensors
the candle backend loads: no torch, no download, the weights copied bit for bit.

    python export-minilm-onnx.py MODEL_DIR OUT_DIR

MODEL_DIR holds config.json and model.safetensors; OUT_DIR receives model.onnx and export.json (the
source weights' SHA-256, which the Rust loader checks). The graph takes `input_ids` and
`attention_mask` (int32, [batch, sequence], padded on the right) and returns `sentence_embedding`
([batch, 384]): BERT, mean over the attention mask, L2-normalized, i.e. the sentence-transformers
recipe.

The graph is written already fused with ONNX Runtime's CPU contrib operators (com.microsoft
EmbedLayerNormalization, Attention, SkipLayerNormalization, BiasGelu), the form ONNX Runtime's own
transformer optimizer aims for, so no pattern matching can silently leave a layer unfused.
`--plain` writes the same network from standard ONNX operators only (for comparison).
"""

import argparse
import hashlib
import json
import os
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 18
DTYPES = {"F32": np.float32, "I64": np.int64}


def read_safetensors(path):
    """The tensors of a .safetensors file: 8-byte little-endian header length, JSON header, data."""
    with open(path, "rb") as f:
        blob = f.read()
    (header_len,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + header_len])
    data = memoryview(blob)[8 + header_len :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = DTYPES[info["dtype"]]
        array = np.frombuffer(data[start:end], dtype=dtype).reshape(info["shape"])
        tensors[name] = array.copy()
    return tensors, hashlib.sha256(blob).hexdigest()


class Graph:
    def __init__(self, weights):
        self.weights = weights
        self.nodes = []
        self.initializers = []
        self.count = 0

    def name(self, hint):
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, hint, array):
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def weight(self, key, transpose=False):
        array = self.weights[key]
        return self.const(key, array.T if transpose else array)

    def op(self, op_type, inputs, hint=None, outputs=1, domain=None, **attrs):
        names = [self.name(hint or op_type) for _ in range(outputs)]
        self.nodes.append(
            helper.make_node(op_type, inputs, names, name=self.name(op_type), domain=domain, **attrs)
        )
        return names[0] if outputs == 1 else names


def fused_encoder(g, config, ids, mask):
    eps = float(config["layer_norm_eps"])
    heads = int(config["num_attention_heads"])
    # token_type_ids are always 0 for a single sentence.
    segments = g.op("Mul", [ids, g.const("zero", np.array(0, dtype=np.int32))], "segment_ids")
    x, mask_index = g.op(
        "EmbedLayerNormalization",
        [
            ids,
            segments,
            g.weight("embeddings.word_embeddings.weight"),
            g.weight("embeddings.position_embeddings.weight"),
            g.weight("embeddings.token_type_embeddings.weight"),
            g.weight("embeddings.LayerNorm.weight"),
            g.weight("embeddings.LayerNorm.bias"),
            mask,
        ],
        "embeddings",
        outputs=2,
        domain="com.microsoft",
        epsilon=eps,
    )
    for layer in range(int(config["num_hidden_layers"])):
        p = f"encoder.layer.{layer}."
        qkv_weight = np.concatenate(
            [g.weights[p + f"attention.self.{n}.weight"].T for n in ("query", "key", "value")], axis=1
        )
        qkv_bias = np.concatenate(
            [g.weights[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")]
        )
        context = g.op(
            "Attention",
            [x, g.const(p + "qkv.weight", qkv_weight), g.const(p + "qkv.bias", qkv_bias), mask_index],
            "context",
            domain="com.microsoft",
            num_heads=heads,
        )
        projected = g.op("MatMul", [context, g.weight(p + "attention.output.dense.weight", True)])
        x = g.op(
            "SkipLayerNormalization",
            [
                projected,
                x,
                g.weight(p + "attention.output.LayerNorm.weight"),
                g.weight(p + "attention.output.LayerNorm.bias"),
                g.weight(p + "attention.output.dense.bias"),
            ],
            "attention_out",
            domain="com.microsoft",
            epsilon=eps,
        )
        inner = g.op("MatMul", [x, g.weight(p + "intermediate.dense.weight", True)])
        inner = g.op(
            "BiasGelu", [inner, g.weight(p + "intermediate.dense.bias")], domain="com.microsoft"
        )
        out = g.op("MatMul", [inner, g.weight(p + "output.dense.weight", True)])
        x = g.op(
            "SkipLayerNormalization",
            [
                out,
                x,
                g.weight(p + "output.LayerNorm.weight"),
                g.weight(p + "output.LayerNorm.bias"),
                g.weight(p + "output.dense.bias"),
            ],
            "layer_out",
            domain="com.microsoft",
            epsilon=eps,
        )
    return x


def plain_encoder(g, config, ids, mask):
    eps = float(config["layer_norm_eps"])
    heads = int(config["num_attention_heads"])
    hidden = int(config["hidden_size"])
    head_size = hidden // heads

    def linear(x, key):
        return g.op("Add", [g.op("MatMul", [x, g.weight(key + ".weight", True)]), g.weight(key + ".bias")])

    def layer_norm(x, key):
        return g.op(
            "LayerNormalization",
            [x, g.weight(key + ".weight"), g.weight(key + ".bias")],
            axis=-1,
            epsilon=eps,
        )

    zero_1d = g.const("zero_1d", np.array([0], dtype=np.int64))
    seq_len = g.op(
        "Slice",
        [g.op("Shape", [ids]), g.const("one_1d", np.array([1], dtype=np.int64)), g.const("two_1d", np.array([2], dtype=np.int64))],
    )
    words = g.op("Gather", [g.weight("embeddings.word_embeddings.weight"), ids])
    pos = g.op("Slice", [g.weight("embeddings.position_embeddings.weight"), zero_1d, seq_len, zero_1d])
    segment = g.const("segment0", g.weights["embeddings.token_type_embeddings.weight"][0])
    x = layer_norm(g.op("Add", [g.op("Add", [words, pos]), segment]), "embeddings.LayerNorm")

    # Additive mask [batch, 1, 1, seq]: 0 where attended, -10000 on padding (as BERT does).
    float_mask = g.op("Cast", [mask], to=TensorProto.FLOAT)
    additive = g.op(
        "Mul",
        [
            g.op("Sub", [g.const("one_f", np.array(1.0, dtype=np.float32)), float_mask]),
            g.const("neg", np.array(-10000.0, dtype=np.float32)),
        ],
    )
    additive = g.op("Unsqueeze", [additive, g.const("axes12", np.array([1, 2], dtype=np.int64))])
    split_shape = g.const("split_shape", np.array([0, 0, heads, head_size], dtype=np.int64))
    merge_shape = g.const("merge_shape", np.array([0, 0, hidden], dtype=np.int64))
    scale = g.const("scale", np.array(1.0 / np.sqrt(head_size), dtype=np.float32))

    for layer in range(int(config["num_hidden_layers"])):
        p = f"encoder.layer.{layer}."

        def split(t, perm):
            return g.op("Transpose", [g.op("Reshape", [t, split_shape])], perm=perm)

        q = split(linear(x, p + "attention.self.query"), [0, 2, 1, 3])
        k = split(linear(x, p + "attention.self.key"), [0, 2, 3, 1])
        v = split(linear(x, p + "attention.self.value"), [0, 2, 1, 3])
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, k]), scale]), additive])
        probs = g.op("Softmax", [scores], axis=-1)
        context = g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        context = g.op("Reshape", [context, merge_shape])
        attended = linear(context, p + "attention.output.dense")
        x = layer_norm(g.op("Add", [attended, x]), p + "attention.output.LayerNorm")
        inner = linear(x, p + "intermediate.dense")
        # Exact GELU: x * 0.5 * (1 + erf(x / sqrt(2))).
        erf = g.op("Erf", [g.op("Div", [inner, g.const("sqrt2", np.array(np.sqrt(2.0), dtype=np.float32))])])
        inner = g.op(
            "Mul",
            [
                g.op("Mul", [inner, g.const("half", np.array(0.5, dtype=np.float32))]),
                g.op("Add", [erf, g.const("one_g", np.array(1.0, dtype=np.float32))]),
            ],
        )
        out = linear(inner, p + "output.dense")
        x = layer_norm(g.op("Add", [out, x]), p + "output.LayerNorm")
    return x


def build(weights, config, fused):
    g = Graph(weights)
    ids, mask = "input_ids", "attention_mask"
    encoder_ids = ids if fused else g.op("Cast", [ids], to=TensorProto.INT64)
    hidden = (fused_encoder if fused else plain_encoder)(g, config, encoder_ids, mask)

    # Mean over the attended tokens, then L2 normalization.
    float_mask = g.op("Unsqueeze", [g.op("Cast", [mask], to=TensorProto.FLOAT), g.const("axis2", np.array([2], dtype=np.int64))])
    axis1 = g.const("axis1", np.array([1], dtype=np.int64))
    summed = g.op("ReduceSum", [g.op("Mul", [hidden, float_mask]), axis1], keepdims=0)
    counts = g.op("ReduceSum", [float_mask, axis1], keepdims=0)
    counts = g.op("Max", [counts, g.const("tiny", np.array(1e-9, dtype=np.float32))])
    mean = g.op("Div", [summed, counts])
    norm = g.op("ReduceL2", [mean, axis1], keepdims=1)
    norm = g.op("Max", [norm, g.const("tiny_norm", np.array(1e-12, dtype=np.float32))])
    g.nodes.append(helper.make_node("Div", [mean, norm], ["sentence_embedding"], name="normalize"))

    dims = ["batch", "sequence"]
    graph = helper.make_graph(
        g.nodes,
        "all-MiniLM-L6-v2",
        [
            helper.make_tensor_value_info(ids, TensorProto.INT32, dims),
            helper.make_tensor_value_info(mask, TensorProto.INT32, dims),
        ],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", int(config["hidden_size"])])],
        g.initializers,
    )
    opsets = [helper.make_opsetid("", OPSET)]
    if fused:
        opsets.append(helper.make_opsetid("com.microsoft", 1))
    model = helper.make_model(graph, opset_imports=opsets, producer_name="mnemo export-minilm-onnx")
    model.ir_version = 8
    if not fused:
        onnx.checker.check_model(model, full_check=True)
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--plain", action="store_true", help="standard ONNX operators only")
    args = parser.parse_args()

    with open(os.path.join(args.model_dir, "config.json")) as f:
        config = json.load(f)
    weights, sha256 = read_safetensors(os.path.join(args.model_dir, "model.safetensors"))
    model = build(weights, config, fused=not args.plain)

    os.makedirs(args.out_dir, exist_ok=True)
    graph = model.SerializeToString()
    with open(os.path.join(args.out_dir, "model.onnx"), "wb") as f:
        f.write(graph)
    with open(os.path.join(args.out_dir, "export.json"), "w") as f:
        json.dump(
            {
                "source": "model.safetensors",
                "source_sha256": sha256,
                "onnx_sha256": hashlib.sha256(graph).hexdigest(),
                "graph": "plain" if args.plain else "fused",
                "onnx": onnx.__version__,
                "numpy": np.__version__,
            },
            f,
            indent=2,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
