"""renderer.media.still_layer: which events are drawn once, the RGBA image libass's drawing is recovered into, and
a run drawn that way against the same run with every event through the ``ass`` filter (real ffmpeg)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from renderer.config import FormatConfig, PanelConfig, TerminalConfig
from renderer.media import ass, still_layer
from renderer.media.ass import Event
from renderer.stages import segment
from renderer.stages.terminal import build_track
from renderer.stages.timeline import Chunk

CONF = Path(__file__).resolve().parent.parent / "conf"
RUN_CS = 300

SHAPE = Event(0, None, 0, "Shape", r"{\pos(10,10)\p1\1c&H1E1E1E&}m 0 0 l 50 0 50 20 0 20")
TYPED = Event(120, 180, 2, "Term", r"{\pos(12,12)}$ ls")
FADING = Event(0, None, 1, "Term", r"{\fad(200,0)\pos(12,30)}hello")
TITLE_ON_TEXT = Event(0, None, 2, "Term", r"{\an8\pos(35,0)}title")


def test_a_whole_run_shape_below_the_text_is_still_and_the_rest_moves():
    parts = still_layer.split([SHAPE, TYPED, FADING, TITLE_ON_TEXT], RUN_CS)
    assert parts.still == [SHAPE]
    assert parts.moving == [TYPED, FADING, TITLE_ON_TEXT]


def test_a_whole_run_event_on_the_layer_of_a_moving_one_moves_with_it():
    level = Event(0, RUN_CS, 1, "Shape", SHAPE.text)  # ended at the run's end, as a run's events are
    parts = still_layer.split([SHAPE, level, FADING], RUN_CS)
    assert parts.still == [SHAPE]
    assert parts.moving == [level, FADING]


@pytest.mark.parametrize("event", [
    Event(1, None, 0, "Shape", SHAPE.text),  # starts after the run's first frame
    Event(0, RUN_CS - 1, 0, "Shape", SHAPE.text),  # ends before its last
    Event(0, None, 0, "Shape", r"{\move(0,0,10,10)\p1}m 0 0 l 5 0 5 5"),
    Event(0, None, 0, "Term", r"{\t(\alpha&HFF&)}blink"),
    Event(0, None, 0, "Term", r"{\k20}ka{\kf30}ra{\ko10}o{\K5}ke"),
])
def test_an_event_that_changes_during_the_run_is_never_still(event):
    assert still_layer.split([event], RUN_CS) == still_layer.Split([], [event])


def test_without_moving_events_every_unchanging_event_is_still():
    events = [SHAPE, Event(0, RUN_CS, 5, "Term", r"{\pos(12,12)}$ ")]
    assert still_layer.split(events, RUN_CS).still == events


def small_header(width: int, height: int) -> str:
    return ass.header(width, height, ass.plain_styles("DejaVu Sans Mono", 12, "#ffffff"))


def read_rgba(still: still_layer.Still) -> np.ndarray:
    return np.fromfile(still.path, dtype=np.uint8).reshape(still.height, still.width, 4)


def test_a_translucent_box_comes_back_with_its_colour_and_opacity_cropped_to_it(tmp_path):
    # orange-brown #cc6633 at ASS transparency 0x80 (opacity 127/255), 30 x 16 from (20, 10) on a 96 x 54 frame
    box = Event(0, RUN_CS, 0, "Shape", r"{\pos(20,10)\p1\bord0\shad0\1c&H3366CC&\1a&H80&}m 0 0 l 30 0 30 16 0 16")
    still = still_layer.render(small_header(96, 54), [box], 96, 54, tmp_path / "box")
    assert still is not None
    assert (still.x, still.y, still.width, still.height) == (20, 10, 30, 16)
    assert still.path.stat().st_size == 30 * 16 * 4  # the rest of the frame is not in the file
    rgba = read_rgba(still).astype(int)
    r, g, b, a = rgba[8, 15]
    assert abs(a - 127) <= 1
    assert max(abs(r - 0xCC), abs(g - 0x66), abs(b - 0x33)) <= 2
    assert rgba[0, :, 3].any() and rgba[-1, :, 3].any() and rgba[:, 0, 3].any() and rgba[:, -1, 3].any()


def test_the_crop_starts_on_an_even_pixel_where_overlay_can_place_it(tmp_path):
    box = Event(0, RUN_CS, 0, "Shape", r"{\pos(21,11)\p1\bord0\shad0}m 0 0 l 9 0 9 5 0 5")
    still = still_layer.render(small_header(96, 54), [box], 96, 54, tmp_path / "odd")
    assert still is not None and (still.x, still.y) == (20, 10) and (still.width, still.height) == (10, 6)
    assert not read_rgba(still)[0, :, 3].any() and not read_rgba(still)[:, 0, 3].any()


def test_nothing_drawn_is_no_image(tmp_path):
    clear = Event(0, RUN_CS, 0, "Shape", r"{\pos(20,10)\p1\bord0\shad0\1a&HFF&}m 0 0 l 30 0 30 16 0 16")
    assert still_layer.render(small_header(96, 54), [clear], 96, 54, tmp_path / "clear") is None
    assert still_layer.render(small_header(96, 54), [], 96, 54, tmp_path / "none") is None


# --- a run drawn the new way against the all-``ass`` way ----------------------------------------------------

FMT = FormatConfig("t", 320, 180, 10)
SECONDS = 3


@dataclass(frozen=True)
class Clip:
    path: Path
    duration: float


def typing_terminal() -> tuple[str, ass.Track]:
    theme = OmegaConf.load(CONF / "theme" / "dark.yaml")
    lines = [{"kind": "command", "text": "cat notes.txt", "prompt": "$"},
             {"kind": "output", "text": "a window with a shadow, rounded corners and three buttons", "prompt": ""}]
    track = build_track(lines, title="Still — layer", duration_s=SECONDS, theme=theme, timing=TerminalConfig(),
                        fmt=FMT, panel=PanelConfig(), always_show=False)
    return track.header, ass.Track(tuple(track.events))


def psnr_per_frame(tmp_path: Path, inputs: list[str], graph: str) -> list[dict[str, float]]:
    (tmp_path / "psnr.filter").write_text(f"{graph};[a][b]psnr=stats_file=psnr.log", encoding="utf-8")
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", *inputs, "-filter_complex_script", "psnr.filter",
                    "-frames:v", str(SECONDS * FMT.fps), "-f", "null", "-"], cwd=tmp_path, check=True)
    lines = (tmp_path / "psnr.log").read_text().splitlines()[:SECONDS * FMT.fps]
    return [{k: float(v) for k, v in (kv.split(":") for kv in line.split())} for line in lines]


def test_a_run_matches_its_all_ass_rendering_to_within_rounding(tmp_path):
    """On a busy picture (testsrc2) and through a fade, the still part overlaid and the rest by libass against
    every event by libass. A code value off on every pixel of the frame is 48.1 dB of Y PSNR, so above it the two
    differ by rounding alone (the blends round differently); a window a pixel off, a lost shadow or a wrong
    opacity costs far more."""
    w, h, fps = FMT.width, FMT.height, FMT.fps
    clip = tmp_path / "busy.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-f", "lavfi", "-i", f"testsrc2=s={w}x{h}:r={fps}:d={SECONDS}",
                    "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv420p", str(clip)], check=True)
    cfg = {"format.width": w, "format.height": h, "format.fps": fps, "assembly.transition_s": 0.5,
           "assembly.grade": ""}
    run = Chunk(0, SECONDS * fps, SECONDS * fps, fps)
    header, track = typing_terminal()
    picture = {"picture": Clip(clip, SECONDS)}

    bare_inputs, bare_chain = segment.scene_run(cfg, {**picture, "layers": ()}, run, tmp_path / "bare")
    every = [e for e in (e.shifted(0, SECONDS * 100) for e in track.events) if e]
    all_ass = ass.write(tmp_path / "all.ass", header, every)
    fade = segment._fades(0.5, run, opens=True, closes=True)
    old = f"{bare_chain},ass=filename={all_ass.name}{fade}"
    new_inputs, new = segment.scene_run(cfg, {**picture, "layers": ((header, track),)}, run, tmp_path / "new",
                                        first_input=bare_inputs.count("-i"), opens=True, closes=True)
    assert "overlay=" in new and "ass=filename=new-0.ass" in new  # the window overlaid, the typing by libass

    frames = psnr_per_frame(tmp_path, bare_inputs + new_inputs, f"{old},format=yuv420p[a];{new},format=yuv420p[b]")
    assert len(frames) == SECONDS * fps
    assert min(f["psnr_y"] for f in frames) > 48.1
    assert min(min(f["psnr_u"], f["psnr_v"]) for f in frames) > 40


def test_layers_libass_draws_one_after_another_are_one_ass_filter_with_the_same_frames(tmp_path):
    """Layers with nothing still between them (the title card, the captions over the terminal's text) go to
    libass as one document, each layer's styles renamed and its events lifted above the previous layer's, so
    one ``ass`` filter (one font setup, one walk of every frame) draws what one filter per layer drew."""
    w, h, fps, seconds = 320, 180, 10, 2
    big = ass.header(w, h, ass.plain_styles("DejaVu Sans Mono", 28, "#ffcc00"))  # "Term", sized otherwise
    below = (small_header(w, h), ass.Track((Event(0, None, 3, "Term", r"{\pos(10,40)}under the card"),
                                            Event(50, 150, 0, "Term", r"{\pos(10,60)}typed $ ls"))))
    above = (big, ass.Track((Event(0, None, 0, "Shape", r"{\fad(300,0)\pos(0,30)\p1\1a&H40&}m 0 0 l 320 0 320 60 0 60"),
                             Event(0, None, 1, "Term", r"{\fad(300,300)\pos(20,35)}TITLE"))))
    cfg = {"format.width": w, "format.height": h, "format.fps": fps, "assembly.transition_s": 0,
           "assembly.grade": "", "theme.background": "#102030"}
    run = Chunk(0, seconds * fps, seconds * fps, fps)
    black = {"layers": (below, above)}  # no picture: the theme's background
    inputs, merged = segment.scene_run(cfg, black, run, tmp_path / "merged")
    assert merged.count("ass=filename=") == 1 and "overlay=" not in merged  # nothing still: one document
    separate = segment.scene_run(cfg, {**black, "layers": ()}, run, tmp_path / "bare")[1] + "".join(
        f",ass=filename={ass.write(tmp_path / f'own-{n}.ass', header, segment._layer_events(track, run)).name}"
        for n, (header, track) in enumerate((below, above)))

    def frames(chain: str) -> bytes:
        return subprocess.run(["ffmpeg", "-v", "error", "-nostdin", *inputs, "-filter_complex", f"{chain},format=rgb24",
                               "-frames:v", str(seconds * fps), "-f", "rawvideo", "-"], cwd=tmp_path,
                              capture_output=True, check=True).stdout

    drawn = frames(merged)
    assert drawn == frames(separate) and len(set(drawn)) > 2  # the same pixels, and something was drawn
