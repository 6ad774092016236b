"""P11: what the offline default looks like, measured: the procedural backgrounds' spatial and temporal
information (ITU-T P.910 SI/TI, ffmpeg's siti filter) and cost, today's calm art against the lavfi sources it
replaced as the default, drawn for every scene of the sample batch; and the share of the sample batch's
duration with words on screen (from the layers its records say were drawn, spot-checked by OCR); and the WCAG
2.x contrast of every text colour against what is behind it, on a frame per scene of the sample batch with
captions and the title card on (``contrast``). Writes a frame grid, one frame per scene, of the sample batch
before (the lavfi sources) and after (the art) to tests/benchmarks/look/, beside this table.

``python -m tests.benchmarks.look contrast RUN_DIR BARE_DIR [--as-drawn]`` measures the contrast of a run made
elsewhere against the same scripts rendered with ``assembly=visual_only`` (BARE_DIR); ``--as-drawn``: by a
renderer that drew the theme's text colours as they are (before they were lifted for contrast)."""

from __future__ import annotations

import re
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from renderer.config import ProceduralVisualConfig
from renderer.media import contrast
from renderer.providers.chain import make
from renderer.script import Options, parse_file
from tests.benchmarks import measure
from tests.benchmarks.report import Row, failed
from tests.conftest import compose_cfg

LOOK = Path(__file__).with_name("look")
SAMPLES = measure.ROOT / "scripts"
LAVFI = ["gradients", "plasma", "life", "mandelbrot"]  # the default sources before the art
DARK = ["#1e1e1e", "#569cd6", "#c586c0", "#4ec9b0", "#4ec9b0"]  # theme=dark's, as the visual stage passes them
COST_TARGET = 1.2
WORDS_TARGET = 0.95
CONTRAST_TARGET = contrast.READABLE  # WCAG 2.x AA, 4.5:1
WITH_TEXT = ["captions.burn=true", "assembly.title_card=true"]  # every text layer the sample batch can show


def rows(b) -> list[Row]:
    options = Options.of(**compose_cfg().script, char_limit=0)
    scenes = [s for path in sorted(SAMPLES.glob("*.*")) for s in parse_file(path, options=options).scenes]
    if b.quick:
        scenes = scenes[:4]
    out = []
    try:
        art, lavfi = _backgrounds(b, scenes, None), _backgrounds(b, scenes, LAVFI)
    except measure.Failed as exc:
        return [failed("P11a", "backgrounds: SI/TI and cost, art vs lavfi", "SI lower, TI > 0", exc)]
    out.append(Row("P11a", f"background spatial information, {len(scenes)} sample scenes at 720p (mean SI)",
                   f"art {art['si']:.1f}", f"lavfi {lavfi['si']:.1f} (life {lavfi['by'].get('life', 0):.1f}, "
                   f"mandelbrot {lavfi['by'].get('mandelbrot', 0):.1f})", f"{art['si'] / lavfi['si']:.2f}×",
                   "lower than life and mandelbrot", art["si"] < min(lavfi["by"].get(k, 1e9) for k in
                                                                        ("life", "mandelbrot")),
                   [f"art by kind: {_by(art)}", f"lavfi by kind: {_by(lavfi)}"]))
    out.append(Row("P11b", "background temporal information (mean TI): calm but moving", f"art {art['ti']:.2f}",
                   f"lavfi {lavfi['ti']:.2f}", f"{art['ti'] / max(lavfi['ti'], 1e-9):.2f}×", "TI > 0",
                   art["ti"] > 0, [f"art TI by kind: {_by(art, 'ti_by')}"]))
    out.append(Row("P11c", "drawing every sample scene's background (CPU, scale 0.25, 12 fps): a part of P11e",
                   f"art {art['seconds']:.1f} s", f"lavfi {lavfi['seconds']:.1f} s",
                   f"{art['seconds'] / lavfi['seconds']:.2f}×", "see P11e", True))
    try:
        out += _words_and_grids(b)
    except measure.Failed as exc:
        out.append(failed("P11d", "words on screen, sample batch", f"≥ {WORDS_TARGET:.0%}", exc))
    try:
        out.append(_contrast_row(b))
    except measure.Failed as exc:
        out.append(failed("P11f", "text contrast, sample batch", f"≥ {CONTRAST_TARGET}:1", exc))
    return out


def _by(result: dict, key: str = "by") -> str:
    return ", ".join(f"{kind} {value:.1f}" for kind, value in sorted(result[key].items()))


def _backgrounds(b, scenes: list, sources: list[str] | None) -> dict:
    """Every scene's background drawn at 720p as the provider draws it (its CPU, numpy's and ffmpeg's), then
    each one's SI/TI."""
    visual = make(ProceduralVisualConfig, **({"sources": sources} if sources else {}))
    folder = b.dir("look-art" if sources is None else "look-lavfi")
    started = _cpu()
    clips = [visual.render(scene.visual or scene.title, folder / f"{n}.mp4", width=1280, height=720,
                           duration=min(scene.duration, 2.0 if b.quick else 6.0),
                           **({"palette": DARK} if visual.THEMED else {}))
             for n, scene in enumerate(scenes)]
    seconds = _cpu() - started
    si: dict[str, list[float]] = {}
    ti: dict[str, list[float]] = {}
    for clip in clips:
        kind = clip.provider.split(":", 1)[1]
        s, t = _siti(clip.path)
        si.setdefault(kind, []).append(s)
        ti.setdefault(kind, []).append(t)
    every_si, every_ti = [v for vs in si.values() for v in vs], [v for vs in ti.values() for v in vs]
    return {"si": _mean(every_si), "ti": _mean(every_ti), "seconds": seconds,
            "by": {k: _mean(v) for k, v in si.items()}, "ti_by": {k: _mean(v) for k, v in ti.items()}}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _cpu() -> float:
    """CPU seconds of this process and of the tools it has waited for."""
    own, tools = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + tools.ru_utime + tools.ru_stime


def _siti(path: Path) -> tuple[float, float]:
    """Mean SI and TI of a clip at 720p (the segment scales the small clip up: what the viewer sees)."""
    err = subprocess.run(["ffmpeg", "-v", "info", "-nostdin", "-i", str(path), "-vf",
                          "scale=1280:720:flags=bicubic,siti=print_summary=1", "-f", "null", "-"],
                         capture_output=True, text=True, check=False).stderr
    si = re.search(r"Spatial Information:\s*Average:\s*([\d.]+)", err)
    ti = re.search(r"Temporal Information:\s*Average:\s*([\d.]+)", err)
    if not (si and ti):
        raise measure.Failed(f"siti printed no summary for {path}:\n{measure.tail(err)}")
    return float(si.group(1)), float(ti.group(1))


def _words_and_grids(b) -> list[Row]:
    """The sample batch rendered as the default does (espeak for speed: the pictures are the point), then as the
    defaults before did; the records' words on screen, OCR on one frame per scene, and the two grids."""
    LOOK.mkdir(exist_ok=True)
    inputs = "batch.inputs=[" + ",".join(str(p) for p in sorted(SAMPLES.glob("*.*"))[: 1 if b.quick else None]) + "]"
    runs, cold, size = {}, {}, {}
    # before: the lavfi sources, no captions burnt in, no title card (the defaults before words on screen)
    old_defaults = [f"visual.sources=[{','.join(LAVFI)}]", "captions.burn=false", "assembly.title_card=false"]
    for name, extra in {"after": [], "before": old_defaults}.items():
        run_dir = b.dir(f"look-{name}")
        cold[name] = measure.renderer([inputs, "voice=espeak", f"cache.dir={b.dir('look-cache')}", *extra], run_dir)
        size[name] = sum(p.stat().st_size for p in run_dir.glob("*/*.mp4"))
        runs[name] = run_dir
        _grid(run_dir, LOOK / f"grid-{name}.jpg")
    shares = {}
    for name, run_dir in runs.items():
        seconds = total = 0.0
        for slug in measure.manifest(run_dir)["scripts"]:
            record = measure.record(run_dir, slug)
            seconds += record["words_on_screen"]["seconds"]
            total += record["duration"]
        shares[name] = seconds / total
    ocr = _ocr(runs["after"])
    seen, shown = sum(ocr), len(ocr)
    after, before = cold["after"], cold["before"]
    return [Row("P11e", "the sample batch cold, default look vs the lavfi backgrounds (espeak-ng, 720p)",
                f"{after.seconds:.0f} s wall, {after.cpu_s:.0f} CPU-s, {size['after'] / 1e6:.1f} MB",
                f"{before.seconds:.0f} s, {before.cpu_s:.0f} CPU-s, {size['before'] / 1e6:.1f} MB",
                f"{after.cpu_s / before.cpu_s:.2f}×", f"≤ {COST_TARGET}× (CPU)",
                after.cpu_s <= COST_TARGET * before.cpu_s),
            Row("P11d", "share of the sample batch's duration with words on screen (from its layers)",
                f"{shares['after']:.1%}", f"before {shares['before']:.1%}", "—", f"≥ {WORDS_TARGET:.0%}",
                shares["after"] >= WORDS_TARGET,
                [f"OCR (tesseract) read words on {seen} of {shown} scene frames (one per scene)",
                 f"grids: {LOOK.relative_to(measure.ROOT)}/grid-before.jpg, grid-after.jpg"])]


def _frames(run_dir: Path) -> list[tuple[Path, float]]:
    """(video, time) a little past the middle of every scene of every script of a run."""
    out = []
    for slug in sorted(measure.manifest(run_dir)["scripts"]):
        video = run_dir / slug / f"{slug}.mp4"
        out += [(video, span["start"] + span["duration"] * 0.6) for span in measure.record(run_dir, slug)["timeline"]]
    return out


def _grid(run_dir: Path, out: Path, columns: int = 6) -> None:
    frames = _frames(run_dir)
    tiles = out.with_suffix("")  # a folder of one PNG per scene, tiled into ``out``
    shutil.rmtree(tiles, ignore_errors=True)
    tiles.mkdir()
    for n, (video, at) in enumerate(frames):
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-ss", f"{at:.2f}", "-i", str(video), "-frames:v", "1",
                        "-vf", "scale=320:180", str(tiles / f"{n:03d}.png")], check=True)
    rows_ = -(-len(frames) // columns)
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-framerate", "1", "-i", str(tiles / "%03d.png"),
                    "-vf", f"tile={columns}x{rows_}:padding=4:color=white", "-frames:v", "1", "-q:v", "3", str(out)],
                   check=True)
    shutil.rmtree(tiles)


def _ocr(run_dir: Path) -> list[bool]:
    """Whether tesseract reads a word of three letters or more on each scene's frame (none without it)."""
    if not shutil.which("tesseract"):
        return []
    found = []
    for video, at in _frames(run_dir):
        png = run_dir / "ocr.png"
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-ss", f"{at:.2f}", "-i", str(video), "-frames:v",
                        "1", str(png)], check=True)
        text = subprocess.run(["tesseract", str(png), "-", "--psm", "11"], capture_output=True, text=True,
                              check=False).stdout
        found.append(bool(re.search(r"[A-Za-z]{3,}", text)))
    return found


# --------------------------------------------------------------------------- text contrast (WCAG 2.x)


def _contrast_row(b) -> Row:
    """The sample batch with every text layer on, and again with none (``visual_only``: the pixels under them)."""
    inputs = "batch.inputs=[" + ",".join(str(p) for p in sorted(SAMPLES.glob("*.*"))[: 1 if b.quick else None]) + "]"
    common = [inputs, "voice=espeak", f"cache.dir={b.dir('look-cache')}"]
    shown, bare = b.dir("look-text"), b.dir("look-bare")
    measure.renderer([*common, *WITH_TEXT], shown)
    measure.renderer([*common, "assembly=visual_only"], bare)
    got = summary(contrast_of(shown, bare))
    return Row("P11f", "WCAG 2.x contrast of the text against what is behind it, a frame per scene (and the "
               "title card) of the sample batch with captions and the title card on",
               f"min {got['min']:.2f}:1, {got['share']:.0%} of {got['frames']} frames ≥ {CONTRAST_TARGET}:1",
               "—", "—", f"≥ {CONTRAST_TARGET}:1 on every frame", got["min"] >= CONTRAST_TARGET,
               ["lowest frames: " + "; ".join(f"{r:.2f}:1 ({where})" for r, where in got["worst"]),
                "by colour (min): " + ", ".join(f"{c} {r:.2f}:1" for c, r in got["by_colour"].items()),
                "method: tests/benchmarks/look.py contrast_of"])


def text_colours(theme, lifted: bool = True) -> set[str]:
    """The colours text is drawn in with ``theme``: as the terminal lifts them for contrast on its panel
    (``lifted``), or the theme's own (what a renderer before that drew)."""
    from renderer.stages.terminal import readable_theme

    names = ["foreground", "prompt", "comment" if theme.get("comment") else "brightBlack"]
    shown = readable_theme(theme, theme.panel_opacity) if lifted else theme
    return {shown[n] for n in names} | {theme.foreground}


def summary(samples: list[tuple[float, str]]) -> dict:
    """Per sampled frame its lowest ratio: the minimum over frames, the share of frames >= the target, the
    lowest frames; and each colour's minimum over the frames it is on."""
    frames: dict[str, float] = {}
    colours: dict[str, float] = {}
    for ratio, where in samples:
        frame, colour = where.rsplit(", ", 1)
        frames[frame] = min(frames.get(frame, ratio), ratio)
        colours[colour] = min(colours.get(colour, ratio), ratio)
    worst = sorted((r, w) for r, w in samples if r == frames[w.rsplit(", ", 1)[0]])
    return {"min": min(frames.values()), "frames": len(frames),
            "share": sum(r >= CONTRAST_TARGET for r in frames.values()) / len(frames), "worst": worst[:3],
            "by_colour": dict(sorted(colours.items()))}


def contrast_of(shown: Path, bare: Path, theme=None, lifted: bool = True) -> list[tuple[float, str]]:
    """The WCAG contrast ratio of each text colour found on each sampled frame (a little past the middle of every
    scene, and 1.5 s into the first, under the title card), with where it was ("<video> <time> s, <colour>").

    Method: the frame with its layers and the same frame without them (``bare``: ``assembly=visual_only``)
    give the pixels a layer drew (they differ by more than 10 levels). Among them, the glyphs of a text colour
    are the pixels within 28 levels of it (each of the theme's text colours, as drawn and as lifted for
    contrast: ``lifted``), taken from the colour furthest from the theme's background on: a pixel next to one already
    taken is the anti-aliased edge of that glyph, not text of its own; what is behind them is the ring 3 to 5 px around those glyphs that is not itself text (its
    anti-aliased edge excluded): the panel, the caption box or the band blended with the picture, or the bare
    picture where a layer has no backing. The ratio compares the text colour's relative luminance with the
    ring's median luminance (a higher percentile would count the stray pixels of glyphs drawn as textures,
    such as ░▒▓, as background). A colour with fewer than 40 glyph pixels on a frame is not counted there."""
    from tests.conftest import compose_cfg

    theme = theme or compose_cfg().theme
    dark = contrast.luminance(theme.background) < 0.18
    colours = sorted(text_colours(theme, lifted), key=contrast.luminance, reverse=dark)  # furthest from the panel first
    out = []
    for video, at in _contrast_frames(shown):
        lit = _rgb(video, at)
        under = _rgb(bare / video.relative_to(shown), at)
        drawn = np.abs(lit.astype(int) - under.astype(int)).max(axis=2) > 10
        glyphs, taken = {}, np.zeros(drawn.shape, dtype=bool)
        for c in colours:
            mask = drawn & (np.abs(lit.astype(int) - np.array(contrast.rgb(c))).max(axis=2) < 28) & ~_dilate(taken, 1)
            taken |= mask
            if mask.sum() >= 40:
                glyphs[c] = mask
        if not glyphs:
            continue
        any_text = _dilate(np.logical_or.reduce(list(glyphs.values())), 2)
        lum = _luminance(lit)
        ratios = []
        for colour, mask in glyphs.items():
            ring = _dilate(mask, 5) & ~any_text
            if ring.sum() < 40:
                continue
            text_lum = contrast.luminance(colour)
            behind = lum[ring]
            ratios.append((contrast.ratio(text_lum, float(np.median(behind))), colour))
        out += [(ratio, f"{video.stem} {at:.1f} s, {colour}") for ratio, colour in ratios]
    if not out:
        raise measure.Failed(f"no text found on the frames of {shown}")
    return out


def _contrast_frames(run_dir: Path) -> list[tuple[Path, float]]:
    first = [(run_dir / slug / f"{slug}.mp4", 1.5) for slug in sorted(measure.manifest(run_dir)["scripts"])]
    return first + _frames(run_dir)


def _rgb(video: Path, at: float) -> np.ndarray:
    info = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                           "stream=width,height", "-of", "csv=p=0", str(video)], capture_output=True, text=True,
                          check=True).stdout
    w, h = map(int, info.strip().split(","))
    raw = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-ss", f"{at:.2f}", "-i", str(video), "-frames:v", "1",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """WCAG relative luminance of every pixel."""
    c = rgb.astype(float) / 255
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return linear @ np.array([0.2126, 0.7152, 0.0722])


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """``mask`` grown by ``r`` pixels (a square), by shifts along each axis in turn."""
    out = mask.copy()
    for axis in (0, 1):
        grown = out.copy()
        for d in range(1, r + 1):
            grown |= np.roll(out, d, axis) | np.roll(out, -d, axis)
        out = grown
    return out


if __name__ == "__main__" and sys.argv[1:2] == ["contrast"]:
    got = summary(contrast_of(Path(sys.argv[2]), Path(sys.argv[3]), lifted="--as-drawn" not in sys.argv))
    print(f"min {got['min']:.2f}:1, {got['share']:.0%} of {got['frames']} frames >= {CONTRAST_TARGET}:1")
    print("lowest frames: " + "; ".join(f"{r:.2f}:1 ({where})" for r, where in got["worst"]))
    print("by colour (min): " + ", ".join(f"{c} {r:.2f}:1" for c, r in got["by_colour"].items()))
