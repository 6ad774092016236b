"""piper's random draws made inputs, so a sentence is spoken the same whatever the model spoke before it.

A piper (VITS) model draws Gaussian noise inside its graph (ONNX ``RandomNormalLike``: the duration
predictor's, the latent's) from a generator its session keeps and advances on every run, so a sentence's
samples depended on every sentence its process had spoken since loading. One voice process speaks for every
script and worker, in whatever order the batch runs them: the same script came out differently from one batch,
runner or resume to the next, and its burned-in captions (timed by the words) with it.

Each ``RandomNormalLike`` is replaced by the first values of a graph input of its own, shaped like the draw it
replaces (``noise_0``, ``noise_1`` …), and the caller fills those from a generator seeded by what is being
spoken (phoneme ids, scales, speaker): the same draw from the same distribution, a function of the sentence
alone. The rewritten model is made once per model file and kept beside the user's other machine-wide notes
(``$XDG_CACHE_HOME/renderer/voices``); the ``onnx`` package is needed only to make it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from renderer.ops.files import atomic_path, user_cache_dir

VERSION = 1  # of the rewrite: a new one makes new files
INPUT = "noise_{}"
VALUES_PER_ID = 4096  # a first guess at a draw's size per phoneme id (channels × frames), made 4× longer till it fits


class NoiseError(RuntimeError):
    pass


def prepared(onnx: Path) -> Path:
    """``onnx`` with its random draws as inputs: the kept rewrite, made now if there is none."""
    info = onnx.stat()
    tag = hashlib.sha256(f"{VERSION}|{onnx.resolve()}|{info.st_size}|{info.st_mtime_ns}".encode()).hexdigest()[:16]
    target = user_cache_dir() / "voices" / f"{onnx.stem}-{tag}.onnx"
    if not target.is_file():
        with atomic_path(target) as part:
            _rewrite(onnx, part)
    return target


def _rewrite(source: Path, out: Path) -> None:
    try:
        import onnx
        from onnx import TensorProto, helper
    except ImportError:
        raise NoiseError("the onnx package is needed once per voice model: pip install onnx") from None
    model = onnx.load(str(source))
    graph = model.graph
    draws = [n for n in graph.node if n.op_type == "RandomNormalLike"]
    nested = [n.name for n in graph.node for a in n.attribute if a.type == onnx.AttributeProto.GRAPH
              and any(m.op_type.startswith("Random") for m in a.g.node)]
    if nested:
        raise NoiseError(f"{source.name}: random draws inside subgraphs ({', '.join(nested)}) cannot be made inputs")
    zero = helper.make_tensor("noise_zero", TensorProto.INT64, [1], [0])
    graph.initializer.append(zero)
    for k, draw in enumerate(draws):
        attrs = {a.name: helper.get_attribute_value(a) for a in draw.attribute}
        name, like, out_name = INPUT.format(k), draw.input[0], draw.output[0]
        graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [f"noise_{k}_len"]))
        shape, count, flat, unit = (f"{name}/{part}" for part in ("shape", "count", "flat", "unit"))
        nodes = [helper.make_node("Shape", [like], [shape]),
                 helper.make_node("ReduceProd", [shape], [count], keepdims=1),
                 helper.make_node("Slice", [name, "noise_zero", count], [flat]),
                 helper.make_node("Reshape", [flat, shape], [unit])]
        scale, mean = float(attrs.get("scale", 1.0)), float(attrs.get("mean", 0.0))
        last = unit
        if scale != 1.0:
            nodes.append(helper.make_node("Mul", [last, _const(graph, f"{name}/scale", scale)], [f"{name}/scaled"]))
            last = f"{name}/scaled"
        if mean != 0.0:
            nodes.append(helper.make_node("Add", [last, _const(graph, f"{name}/mean", mean)], [f"{name}/moved"]))
            last = f"{name}/moved"
        dtype = int(attrs.get("dtype", TensorProto.FLOAT))
        nodes.append(helper.make_node("Cast", [last], [out_name], to=dtype) if dtype != TensorProto.FLOAT else
                     helper.make_node("Identity", [last], [out_name]))
        at = list(graph.node).index(draw)
        graph.node.remove(draw)
        for offset, node in enumerate(nodes):
            graph.node.insert(at + offset, node)
    onnx.save(model, str(out))


def _const(graph, name: str, value: float) -> str:
    from onnx import TensorProto, helper

    graph.initializer.append(helper.make_tensor(name, TensorProto.FLOAT, [1], [value]))
    return name


def inputs(session) -> list[str]:
    """The noise inputs a prepared model's session takes, in order."""
    names = {i.name for i in session.get_inputs()}
    return [INPUT.format(k) for k in range(len(names)) if INPUT.format(k) in names]


def draws(names: list[str], feeds: dict[str, np.ndarray], ids: int, factor: int = 1) -> dict[str, np.ndarray]:
    """The values for ``names``, seeded by ``feeds`` (the sentence's phoneme ids, scales, speaker): each input
    its own stream, ``ids × VALUES_PER_ID × factor`` long. A longer call begins with a shorter one's values."""
    digest = hashlib.sha256()
    for key in sorted(feeds):
        digest.update(key.encode() + np.ascontiguousarray(feeds[key]).tobytes())
    seed = int.from_bytes(digest.digest()[:8], "big")
    size = max(1, ids) * VALUES_PER_ID * factor
    return {name: np.random.default_rng([seed, k]).standard_normal(size, dtype=np.float32)
            for k, name in enumerate(names)}


def run(session, feeds: dict[str, np.ndarray], names: list[str], options=None) -> list[np.ndarray]:
    """``session.run`` (with its ``RunOptions``) with the noise for ``feeds``; a draw larger than its input is
    fed again, longer."""
    ids = int(feeds["input"].shape[-1])
    factor = 1
    while True:
        try:
            return session.run(None, {**feeds, **draws(names, feeds, ids, factor)}, options)
        except Exception as exc:  # onnxruntime's own error type: a Reshape short of values
            if factor >= 64 or "Reshape" not in str(exc) and "reshape" not in str(exc):
                raise
            factor *= 4
