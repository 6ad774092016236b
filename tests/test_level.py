"""The level stage (renderer/stages/level.py): a spoken clip shaped and measured into a file of its own, the
spoken one left as it is (it may be the cache's); a clip that cannot be shaped plays as spoken, and the
narration stage measures it itself."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hydra.utils import instantiate

from renderer.engine.node import NodeInput
from renderer.media.ffmpeg import FFmpegError
from renderer.stages import level, narration, voice
from renderer.stages.timeline import plan
from tests.conftest import TINY, compose_cfg, parsed
from tests.test_soundtrack import CFG, r128


@pytest.fixture
def spoken(tmp_path: Path):
    (tmp_path / "voice").mkdir()
    return voice.node(parsed().scenes[0], instantiate(compose_cfg(*TINY).voice), timeout=60).fn(
        NodeInput(None, {}, {}, tmp_path / "voice", "v" * 64))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_clip_is_shaped_into_a_file_of_its_own_and_the_spoken_one_is_left_as_it_is(spoken, tmp_path):
    before = digest(spoken.path)
    assert spoken.loudness is None  # the voice stage gives the clip as spoken
    shaped = level.render(NodeInput(None, {}, {"voice": spoken}, tmp_path, "l" * 64), scene=0, timeout=60)
    assert digest(spoken.path) == before and shaped.path != spoken.path and shaped.path.parent == tmp_path
    assert shaped.duration == spoken.duration and shaped.loudness and shaped.loudness.energies
    assert shaped.loudness.lufs == pytest.approx(r128(shaped.path)[0], abs=0.15)


def test_a_clip_that_cannot_be_shaped_plays_as_spoken_and_its_piece_still_lands_on_the_target(spoken, tmp_path):
    inp = NodeInput(None, {}, {"voice": spoken}, tmp_path, "l" * 64)
    with pytest.raises(FFmpegError):
        level.render(inp, scene=0, timeout=0.001)  # ffmpeg stopped before it could finish
    kept = level.as_spoken(inp, FFmpegError("the encoder broke"), scene=0)
    assert kept.path == spoken.path and kept.loudness is None and "plays as spoken" in kept.warnings[0]
    piece = narration.render(NodeInput(None, CFG, {"voice": kept, "where": narration._where(plan([(0, 4)], 25), 0)},
                                       tmp_path, "n" * 64), scene=0, timeout=60)
    assert r128(piece.path)[0] == pytest.approx(CFG["audio.loudness_lufs"], abs=0.5)
