"""The synthetic LOG scripts the benchmarks render."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from renderer.config import FormatConfig, PanelConfig, TerminalConfig
from renderer.stages.terminal import build_track

CONF = Path(__file__).resolve().parents[2] / "conf"
COLOURS = ["red", "golden", "green", "cyan", "blue", "violet", "grey", "white"]
NARRATION = ("One or two sentences of narration for scene {i}. The {colour} signal drifts across sector {i}.",
             "Edited narration for scene {i}, rewritten just once. The {colour} signal fades from sector {i}.")
SPOKEN = ("The first red flag was a loop. A planner asked itself the same question, again and again, and each "
          "answer came back a little stranger than the one before. Nobody noticed at first, because the logs "
          "looked normal and the dashboards stayed green. ")


def length(seconds: float) -> str:
    """'5-minute', '30 s': a script's length for a row's text."""
    return f"{seconds / 60:g}-minute" if seconds >= 60 else f"{seconds:g} s"


def write(path: Path, scenes: list[str], title: str = "BENCH_0001 — SYNTHETIC") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([f"SCRIPT: {title}", "A script for the benchmarks", "", *scenes,
                               f"END {title.split()[0]}", ""]), encoding="utf-8")
    return path


def edit_scenes(total_s: int, count: int, edit: str = "") -> list[str]:
    """`count` scenes over `total_s`, every other one typing; `edit` ('narration' or 'screen') changes one
    middle scene (for 'screen', one with on-screen text)."""
    middle = count // 2 + 1
    edited = {"narration": middle, "screen": middle if middle % 2 else middle - 1}.get(edit)
    return [_edit_scene(i, round((i - 1) * total_s / count), edit if i == edited else "") for i in range(1, count + 1)]


def _edit_scene(i: int, start: int, edit: str) -> str:
    colour = COLOURS[i % len(COLOURS)]
    lines = [f"[{start // 60}:{start % 60:02d} – Scene {i}]", f"Visual: A {colour} sky over a server farm, scene {i}"]
    if i % 2:
        lines += ["ON-SCREEN TEXT:", f"$ probe --sector {i}" + (" --verbose" if edit == "screen" else ""),
                  f"sector {i}: " + ("anomaly logged" if edit == "screen" else "nominal")]
    said = NARRATION[edit == "narration"].format(i=i, colour=colour)
    return "\n".join([*lines, "Narration:", f"“{said}”", ""])


def block(i: int) -> list[tuple[str, str]]:
    """One beat of typical on-screen text: a comment, a command, its output (kind, text)."""
    return [("comment", f"# step {i}: follow the loop through the planner"),
            ("command", f"grep -n 'loop' /var/log/descent-{i:03d}.log | tail -3"),
            ("output", f"{1200 + i}: WARN planner loop detected (depth={i}) retry 100%"),
            ("output", f"{1201 + i}: ERROR mirror of mirror: recursion depth {i}")]


def on_screen(blocks: int) -> list[tuple[str, str]]:
    return [line for i in range(blocks) for line in block(i)]


def blocks_that_fit(seconds: float, fmt: FormatConfig, theme: str = "dark") -> int:
    """The most blocks the terminal types out in `seconds` at the configured rhythm (no speed-up)."""
    colours = OmegaConf.load(CONF / "theme" / f"{theme}.yaml")
    n = 1
    while build_track([{"kind": k, "text": t, "prompt": "$" if k == "command" else ""} for k, t in on_screen(n + 1)],
                      title="benchmark", duration_s=seconds, theme=colours, timing=TerminalConfig(), fmt=fmt,
                      panel=PanelConfig(0.0, 0.0, 1.0, 1.0), always_show=True).speed_scale == 1.0:
        n += 1
    return n


def typing_scene(lines: list[tuple[str, str]], spoken_words: int) -> str:
    """One scene that types `lines` while `spoken_words` of narration are said."""
    text = [f"$ {t}" if kind == "command" else t for kind, t in lines]
    words = (SPOKEN * (spoken_words // len(SPOKEN.split()) + 1)).split()[:spoken_words]
    return "\n".join(["[0:00 – The loop]", "Visual: A server farm under a red sky", "ON-SCREEN TEXT:", *text,
                      "Narration:", f"“{' '.join(words).rstrip('.,')}.”", ""])
