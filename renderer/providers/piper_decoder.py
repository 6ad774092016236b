"""A piper model split at its decoder, so a sentence's audio is decoded in windows of its latent, not whole.

A piper (VITS) model turns phonemes into a latent of 192 channels per frame (text encoder, durations, flow), then
its decoder (HiFi-GAN) upsamples that 256× into samples. The decoder's working memory grows with the audio it
makes, ~22 MB a second on en_US-joe-medium; the rest of the model needs ~3.5 MB a second. Its convolutions see a
few frames either side (measured: 12 frames of context reproduce the whole sentence's samples to 1e-7), so
decoding ``WINDOW_FRAMES`` at a time, each with ``MARGIN_FRAMES`` of context it then drops, gives the same
samples in bounded memory: an unbroken 9.3 s sentence took the process to 349 MB whole and to 223 MB in windows
(142 MB of either the loaded model), in 0.73-0.78 s rather than 0.86-0.97 s; a 130-word scene was spoken in
3.1-3.3 s rather than 3.5 s. Windows of 128 frames held that sentence to 189 MB but spoke the scene ~10 % slower
(3.7-4.1 s): the voice process's peak is not the render's (P2), its speed is on P8's critical path.

The halves are cut where the exporter put the decoder (nodes named ``/dec/…``, as piper's PyTorch exports name
them) and kept beside the prepared model (renderer/providers/piper_noise.py), made once per model file with the
``onnx`` package. A model whose graph names no decoder is run whole.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from renderer.ops.files import atomic_path

VERSION = 1  # of the cut: a new one makes new files
DECODER = "/dec/"  # the decoder's scope in the node names of piper's exports
WINDOW_FRAMES = 256  # frames decoded at once (~3 s at 22,050 Hz): the decoder's working memory, ~60 MB
MARGIN_FRAMES = 16  # context decoded on each side of a window and dropped (12 is the least that is exact)


def split(onnx: Path) -> tuple[Path, Path] | None:
    """``onnx``'s kept halves: ``front`` (the model's inputs → the decoder's) and ``decoder`` (those → the
    model's output), cut now if they are not there yet; None for a graph with no decoder to cut at. The
    decoder's first input is the latent, with a time axis; any other (a speaker's embedding) is fed whole."""
    front, decoder = (onnx.with_name(f"{onnx.stem}-{half}{VERSION}.onnx") for half in ("front", "decoder"))
    if front.is_file() and decoder.is_file():
        return front, decoder
    import onnx as onnx_lib
    from onnx.utils import Extractor

    model = onnx_lib.load(str(onnx))
    graph = model.graph
    inside = [n for n in graph.node if n.name.startswith(DECODER)]
    made_outside = {out for n in graph.node if not n.name.startswith(DECODER) for out in n.output}
    boundary = list(dict.fromkeys(i for n in inside for i in n.input if i in made_outside))
    if not inside or not inside[0].input or inside[0].input[0] not in boundary:
        return None  # no decoder, or one that does not open on a tensor the rest of the model makes
    latent = inside[0].input[0]
    boundary = [latent, *(name for name in boundary if name != latent)]
    extractor = Extractor(model)
    halves = {front: extractor.extract_model([i.name for i in graph.input], boundary),
              decoder: extractor.extract_model(boundary, [o.name for o in graph.output])}
    for target, half in halves.items():
        with atomic_path(target) as part:
            onnx_lib.save(half, str(part))
    return front, decoder


def decode(session, feeds: dict[str, np.ndarray], latent: str, options=None) -> np.ndarray:
    """The samples of ``feeds`` through the decoder ``session``, ``feeds[latent]`` (batch, channels, frames)
    decoded ``WINDOW_FRAMES`` at a time; ``options`` (``RunOptions``) go to its last run."""
    frames = int(feeds[latent].shape[-1])
    starts = range(0, frames, WINDOW_FRAMES)
    parts = []
    for n, start in enumerate(starts, 1):
        end = min(frames, start + WINDOW_FRAMES)
        first, last = max(0, start - MARGIN_FRAMES), min(frames, end + MARGIN_FRAMES)
        window = {**feeds, latent: np.ascontiguousarray(feeds[latent][..., first:last])}
        samples = session.run(None, window, options if n == len(starts) else None)[0].reshape(-1)
        hop, rest = divmod(samples.size, last - first)
        if rest:
            raise ValueError(f"the decoder made {samples.size} samples of {last - first} frames: not a whole hop")
        parts.append(samples[(start - first) * hop:(end - first) * hop])
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
