"""Terminal themes: list the installed ones, import published VHS / xterm.js theme JSON as new ones.

    python -m renderer.themes list                      # the renderer's themes and your own
    python -m renderer.themes list themes.json          # the themes a JSON file holds
    python -m renderer.themes import theme.json [--name NAME] [--out DIR] [--force]

Imported themes go to ``theme/`` in your config dir (``renderer.config.user_config_dir``: $RENDERER_CONFIG_DIR,
else ~/.config/renderer), which is on Hydra's search path: ``python -m renderer theme=NAME`` finds them.

The JSON is one theme object or a list of them (VHS's themes.json is a list: ``--name`` picks one), with the
field names VHS and xterm.js use: background, foreground, cursor and the 16 ANSI colours black ... white,
brightBlack ... brightWhite (magenta or purple). Windows Terminal's ``{"schemes": [...]}`` with cursorColor
works too. Missing cursor, prompt and title bar colours are derived; the font and layout are ours; a selection
colour is left out (nothing is ever selected in a rendered terminal). The result is checked against ``ThemeConfig`` before it is written.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from renderer.config import PALETTE, ThemeConfig, packaged_config_dir, user_config_dir
from renderer.ops.exits import Exit
from renderer.ops.files import slugify, write_text_atomic
from renderer.ops.terminal_text import for_terminal

REQUIRED = ("background", "foreground") + PALETTE
ALIASES = {  # our field -> the names it goes by in published theme files, first match wins
    "purple": ("purple", "magenta"),
    "brightPurple": ("brightPurple", "brightMagenta"),
    "cursor": ("cursor", "cursorColor"),
}
COLOUR_FIELDS = ("background", "foreground", "prompt", "cursor") + PALETTE + ("title_bar",)
LAYOUT_FIELDS = ("font_family", "font_size", "line_spacing", "padding", "window_chrome", "panel_opacity")
HEX = re.compile(r"#([0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})")
RGB_FUNCTION = re.compile(r"rgba?\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*(?:,\s*([0-9.]+)\s*)?\)")


class ThemeError(ValueError):
    """A theme file that cannot be imported; the message names the file and the field."""


# --------------------------------------------------------------------------- colours


def parse_colour(value: Any, where: str) -> tuple[tuple[int, int, int], float]:
    """'#rgb', '#rrggbb', '#rrggbbaa', 'rgb(r, g, b)' or 'rgba(r, g, b, a)' -> ((r, g, b), alpha)."""
    text = value.strip() if isinstance(value, str) else ""
    if match := HEX.fullmatch(text):
        digits = match.group(1)
        if len(digits) <= 4:
            digits = "".join(ch * 2 for ch in digits)
        rgb = tuple(int(digits[i:i + 2], 16) for i in (0, 2, 4))
        alpha = int(digits[6:8], 16) / 255 if len(digits) == 8 else 1.0
        return rgb, alpha  # type: ignore[return-value]
    if (match := RGB_FUNCTION.fullmatch(text)) and all(int(match.group(i)) <= 255 for i in (1, 2, 3)):
        alpha = float(match.group(4)) if match.group(4) else 1.0
        return (int(match.group(1)), int(match.group(2)), int(match.group(3))), min(1.0, alpha)
    raise ThemeError(f"{where}: {value!r} is not a colour; use '#rrggbb' (or '#rgb', 'rgb(r, g, b)')")


def to_hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{max(0, min(255, round(c))):02x}" for c in rgb)


def mix(a: tuple[float, float, float], b: tuple[float, float, float], amount: float) -> tuple[float, ...]:
    """``amount`` of ``b`` over ``a`` (0 = a, 1 = b)."""
    return tuple(x + (y - x) * amount for x, y in zip(a, b))


def is_dark(rgb: tuple[float, float, float]) -> bool:
    r, g, b = rgb
    return 0.2126 * r + 0.7152 * g + 0.0722 * b < 128


def title_bar_for(background: tuple[int, int, int]) -> tuple[float, ...]:
    """A window bar a shade off the background: lighter on dark themes, darker on light ones."""
    return mix(background, (255, 255, 255) if is_dark(background) else (0, 0, 0), 0.08)


# --------------------------------------------------------------------------- reading theme files


def load_themes(path: Path) -> list[dict]:
    """The theme objects in a JSON file: one object, a list of them, or Windows Terminal's {"schemes": [...]}."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise ThemeError(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise ThemeError(f"{path}: not UTF-8 text, so not a theme JSON file") from exc
    except json.JSONDecodeError as exc:
        raise ThemeError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
    if isinstance(data, dict) and isinstance(data.get("schemes"), list):
        data = data["schemes"]
    themes = data if isinstance(data, list) else [data]
    for i, theme in enumerate(themes):
        if not isinstance(theme, dict):
            raise ThemeError(f"{path}: entry {i + 1} is {type(theme).__name__}, not a theme object "
                             "({\"background\": \"#...\", \"foreground\": \"#...\", \"black\": ...})")
    if not themes:
        raise ThemeError(f"{path}: holds no themes")
    return themes


def theme_label(theme: dict, index: int) -> str:
    name = theme.get("name")
    return name if isinstance(name, str) and name.strip() else f"#{index + 1}"


def pick(themes: list[dict], name: str | None, path: Path) -> dict:
    """The theme called ``name`` (exact, then ignoring case and punctuation); the only one if no name."""
    labels = [theme_label(t, i) for i, t in enumerate(themes)]
    if name is None:
        if len(themes) == 1:
            return themes[0]
        raise ThemeError(f"{path} holds {len(themes)} themes: choose one with --name (e.g. "
                         f"{', '.join(repr(label) for label in labels[:3])}); "
                         f"`python -m renderer.themes list {path}` shows them all")
    for same in (lambda label: label == name, lambda label: theme_slug(label) == theme_slug(name)):
        for theme, label in zip(themes, labels):
            if same(label):
                return theme
    close = difflib.get_close_matches(name, labels, n=3, cutoff=0.5)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    raise ThemeError(f"{path}: no theme named {name!r}{hint}")


def theme_slug(name: str) -> str:
    """The config name of a theme: 'Catppuccin Mocha' -> 'catppuccin_mocha' (theme=catppuccin_mocha)."""
    return slugify(name).replace("-", "_")


def _colour_of(raw: dict, field: str, where: str) -> tuple[tuple[int, int, int], float] | None:
    for key in ALIASES.get(field, (field,)):
        if raw.get(key) not in (None, ""):
            return parse_colour(raw[key], f"{where}, field {key!r}")
    return None


def convert(raw: dict, *, where: str, name: str | None = None) -> dict[str, Any]:
    """A published theme object -> our theme fields, in the order the shipped YAML files use."""
    found = {field: _colour_of(raw, field, where) for field in REQUIRED + ("cursor",)}
    missing = [" or ".join(repr(key) for key in ALIASES.get(f, (f,))) for f in REQUIRED if found[f] is None]
    if missing:
        raise ThemeError(f"{where}: missing colour{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    background = found["background"][0]  # type: ignore[index]
    # a translucent colour is what it looks like over the background
    colours = {field: to_hex(mix(background, rgb, alpha)) for field, (rgb, alpha) in
               ((f, c) for f, c in found.items() if c is not None)}
    colours["background"] = to_hex(background)
    colours.setdefault("cursor", colours["foreground"])
    colours["prompt"] = colours["green"]
    colours["title_bar"] = to_hex(title_bar_for(background))
    defaults = {f.name: f.default for f in fields(ThemeConfig)}
    theme: dict[str, Any] = {"name": theme_slug(name or theme_label(raw, 0))}
    theme.update({field: colours[field] for field in COLOUR_FIELDS})
    theme.update({field: defaults[field] for field in LAYOUT_FIELDS})
    return theme


def validate(theme: dict[str, Any]) -> None:
    """Fail unless ``ThemeConfig`` accepts ``theme`` as a complete theme, as Hydra will when it is used."""
    merged = OmegaConf.merge(OmegaConf.structured(ThemeConfig), theme)
    OmegaConf.to_container(merged, throw_on_missing=True)


def to_yaml(theme: dict[str, Any], display_name: str, source: str) -> str:
    """The theme as a conf/theme YAML file, commented like the shipped ones."""
    notes = {"prompt": "colour of the \"$ \" / \"> \" prompt (derived: green)",
             "title_bar": "window chrome bar colour (derived from the background)",
             "font_size": "pixels at 720p output height (scaled for other heights)",
             "padding": "pixels at 720p", "window_chrome": "draw a title bar with three dots",
             "panel_opacity": "0..1 opacity of the terminal background over the visual"}
    lines = [f"# conf/theme/{theme['name']}.yaml — {_one_line(display_name)}, imported from {_one_line(source)}",
             "# by `python -m renderer.themes import`. ANSI colour names follow the VHS / charmbracelet theme JSON."]
    for key, value in theme.items():
        line = yaml.safe_dump({key: value}, allow_unicode=True, width=float("inf")).rstrip("\n")
        if "\n" in line:  # a value YAML can only write on several lines: emitted whole, no comment after it
            lines.append(line)
        else:
            lines.append(f"{line:<25}# {notes[key]}" if key in notes else line)
    return "\n".join(lines) + "\n"


def _one_line(text: str) -> str:
    """Text from the theme file for a comment: no line break of any kind (YAML's include U+0085 and U+2028), so
    it cannot end the comment and start a config line."""
    return " ".join(for_terminal(text).split())


def theme_dirs() -> list[Path]:
    """Where themes are found, in Hydra's search order: the packaged ones, then the user's own."""
    return [packaged_config_dir() / "theme", user_config_dir() / "theme"]


def import_theme(path: Path, *, name: str | None = None, out_dir: Path | None = None,
                 force: bool = False) -> Path:
    """Import one theme from ``path`` into ``out_dir``; return the YAML file written."""
    path = Path(path)
    themes = load_themes(path)
    raw = pick(themes, name if len(themes) > 1 else None, path)
    label = theme_label(raw, themes.index(raw))
    where = f"{path}, theme {label!r}" if len(themes) > 1 else str(path)
    display = name if (len(themes) == 1 and name) else label
    if display.startswith("#"):  # a nameless theme object: named after its file
        display = path.stem
    theme = convert(raw, where=where, name=display)
    validate(theme)
    target = Path(out_dir or user_config_dir() / "theme") / f"{theme['name']}.yaml"
    if target.exists() and not force:
        raise ThemeError(f"{target} exists: pass --force to replace it")
    write_text_atomic(target, to_yaml(theme, display, path.name))
    return target


def installed(dirs: list[Path] | None = None) -> list[dict[str, Any]]:
    """The themes in ``dirs`` (default: ``theme_dirs()``), as loaded YAML, by name; the first of a name wins,
    as in Hydra's search path."""
    found: dict[str, dict[str, Any]] = {}
    for theme_dir in dirs or theme_dirs():
        for p in sorted(Path(theme_dir).glob("*.yaml")):
            found.setdefault(p.stem, dict(OmegaConf.to_container(OmegaConf.load(p)), file=str(p)))  # type: ignore[arg-type]
    return [found[name] for name in sorted(found)]


# --------------------------------------------------------------------------- command line


def _list(args: argparse.Namespace) -> None:
    if args.file:
        for i, theme in enumerate(load_themes(Path(args.file))):
            bg = theme.get("background", "?")
            print(for_terminal(f"{theme_label(theme, i):<32} {theme_slug(theme_label(theme, i)):<28} background {bg}"))
        return
    for theme in installed([Path(args.dir)] if args.dir else None):
        print(for_terminal(f"{Path(theme['file']).stem:<18} background {theme.get('background')}  "
                           f"foreground {theme.get('foreground')}  prompt {theme.get('prompt')}"))


def _import(args: argparse.Namespace) -> None:
    target = import_theme(Path(args.file), name=args.name, out_dir=Path(args.out) if args.out else None, force=args.force)
    print(f"wrote {target}; use it with: python -m renderer theme={target.stem}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m renderer.themes", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="list installed themes, or the themes in a JSON file")
    listing.add_argument("file", nargs="?", help="a theme JSON file (VHS themes.json, xterm.js theme ...)")
    listing.add_argument("--dir", help="one theme directory (default: the renderer's and your config dir's)")
    listing.set_defaults(run=_list)
    importing = commands.add_parser("import", help="import a VHS / xterm.js theme JSON as a conf/theme YAML")
    importing.add_argument("file", help="theme JSON: one theme object or a list of them")
    importing.add_argument("--name", help="the theme to take from a list; for a single theme, its new name")
    importing.add_argument("--out", help=f"where to write it (default: {user_config_dir() / 'theme'})")
    importing.add_argument("--force", action="store_true", help="replace a theme file of the same name")
    importing.set_defaults(run=_import)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except ThemeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return Exit.FAILED
    return Exit.OK
