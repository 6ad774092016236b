"""Check scripts without rendering them: ``python -m renderer.check FILE…``.

Prints each script's parsed structure (title, scenes with start, length and title, narration and on-screen
line counts) and every issue with its file:line, message and hint; ``--json`` prints one JSON document
instead. Exit code 1 when any file has an error (warnings alone give 0), 2 on a usage error. The script limits
(``script.max_*``) have an option each, ``--max-scenes`` …; text output has no terminal escape sequences.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from renderer.config import ElevenLabsVoiceConfig, ScriptConfig
from renderer.ops.exits import Exit
from renderer.ops.terminal_text import for_terminal
from renderer.script import FORMATS, Options, Script, clip, format_time, parse_file


LIMITS = {  # the script.* limits, each with an option of its own
    "max_size_mb": "largest script file, MB",
    "max_line_chars": "longest line, characters",
    "max_scenes": "most scenes in a script",
    "max_scene_s": "longest scene, seconds",
    "max_duration_s": "longest script, seconds",
}


def main(argv: list[str] | None = None) -> int:
    args = _arguments().parse_args(argv)
    options = Options.of(args.format, args.wpm, args.min_scene_s, args.char_limit,
                         **{name: getattr(args, name) for name in LIMITS})
    scripts = [parse_file(path, options=options) for path in args.files]
    if args.json:
        print(json.dumps([summary(script) for script in scripts], ensure_ascii=False, indent=2))  # escapes \u001b
    else:
        print(for_terminal("\n\n".join(report(script) for script in scripts)))  # titles are the scripts' own
        print(f"\n{totals(scripts)}")
    return Exit.FAILED if any(script.errors for script in scripts) else Exit.OK


def _arguments() -> argparse.ArgumentParser:
    defaults, limit = ScriptConfig(), ElevenLabsVoiceConfig().char_limit  # the one voice with a request limit
    parser = argparse.ArgumentParser(
        prog="python -m renderer.check",
        description="Parse video scripts and report their structure and problems, without rendering.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="script files (LOG or Markdown)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    parser.add_argument("--format", choices=FORMATS, default=defaults.format,
                        help=f"script format (default: {defaults.format}, detected from the content)")
    parser.add_argument("--wpm", type=_positive, default=defaults.words_per_minute, metavar="N",
                        help=f"speaking rate in words per minute (default: {defaults.words_per_minute:g})")
    parser.add_argument("--min-scene-s", type=_not_negative, default=defaults.min_last_scene_s, metavar="S",
                        help=f"shortest estimated scene, seconds (default: {defaults.min_last_scene_s:g})")
    parser.add_argument("--char-limit", "--max-chars", type=int, default=limit, metavar="N",
                        help=f"narration characters per voice request, voice.char_limit; 0 = no limit (default: "
                             f"{limit}, ElevenLabs')")
    for name, what in LIMITS.items():
        default = getattr(defaults, name)
        parser.add_argument("--" + name.replace("_", "-"), type=_not_negative, default=default, metavar="N",
                            help=f"{what}, script.{name}; 0 = no limit (default: {default:g})")
    return parser


def _positive(value: str) -> float:
    number = float(value)
    if not 0 < number < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {value}")
    return number


def _not_negative(value: str) -> float:
    number = float(value)
    if not 0 <= number < float("inf"):
        raise argparse.ArgumentTypeError(f"must be zero or more, not {value}")
    return number


# --------------------------------------------------------------------------- output


def summary(script: Script) -> dict:
    """One script for ``--json``: the parsed structure and its issues."""
    data = script.to_dict()
    return {
        "file": script.path,
        "format": script.format,
        "title": script.title,
        "script_id": script.script_id,
        "subtitle": script.subtitle,
        "duration": script.duration,
        "scenes": data["scenes"],
        "issues": [asdict(issue) for issue in script.issues],
    }


def report(script: Script) -> str:
    """One script as text: a heading, the scene table, the issues with their hints."""
    name = f"{script.script_id} — {script.title}" if script.script_id else script.title
    lines = [f"{script.path} ({script.format}): {name}"]
    if script.subtitle:
        lines.append(f"  {script.subtitle}")
    if script.scenes:
        rows = [
            [str(scene.index + 1), str(scene.line), format_time(scene.start), f"{scene.duration:g} s",
             clip(scene.title + (f" | {scene.subtitle}" if scene.subtitle else ""), 48),
             str(len(scene.narration)), str(len(scene.on_screen))]
            for scene in script.scenes
        ]
        header = ["#", "line", "start", "length", "title", "narration", "on-screen"]
        lines += ["", *_table(header, rows, right={0, 1, 2, 3, 5, 6}, indent="  ")]
        lines.append(f"  {len(script.scenes)} scene(s), {format_time(script.duration)} in all")
    lines.append("")
    lines += _issue_lines(script) if script.issues else ["  no issues"]
    return "\n".join(lines)


def _issue_lines(script: Script) -> list[str]:
    rows = []
    for issue in script.issues:
        where = f"{issue.file}:{issue.line}" if issue.line is not None else issue.file
        rows.append([issue.severity, where, issue.code, issue.message.removeprefix(f"{where}: ")])
    table = _table(["severity", "where", "code", "message"], rows, indent="  ")
    lines = table[:2]
    for row_line, issue in zip(table[2:], script.issues):
        lines += [row_line, f"    hint: {issue.hint}"]
    return lines


def totals(scripts: list[Script]) -> str:
    errors = sum(len(s.errors) for s in scripts)
    warnings = sum(len(s.warnings) for s in scripts)
    failing = sum(1 for s in scripts if s.errors)
    verdict = f"{failing} with errors" if failing else "all OK"
    return f"{len(scripts)} file(s) checked, {verdict}: {errors} error(s), {warnings} warning(s)"


def _table(header: list[str], rows: list[list[str]], *, right: set[int] = frozenset(), indent: str = "") -> list[str]:
    """Plain-text columns: a header, a rule, one line per row; columns in ``right`` are right-aligned."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]

    def line(cells: list[str]) -> str:
        padded = [cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(cells, widths))]
        return (indent + "  ".join(padded)).rstrip()

    rule = indent + "  ".join("-" * min(w, 48) for w in widths)
    return [line(header), rule, *(line(row) for row in rows)]
