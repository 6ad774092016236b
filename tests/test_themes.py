"""renderer.cli.themes: importing VHS / xterm.js theme JSON into conf/theme, listing, and clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from renderer.cli import themes
from renderer.cli.themes import ThemeError, import_theme, parse_colour
from renderer.config import ThemeConfig
from tests.conftest import compose_cfg

CONF = Path(__file__).resolve().parent.parent / "conf"
ANSI_VALUES = {  # the 16 colours with VHS's field names (magenta, not purple)
    "black": "#000000", "red": "#cd3131", "green": "#0dbc79", "yellow": "#e5e510", "blue": "#2472c8",
    "magenta": "#bc3fbc", "cyan": "#11a8cd", "white": "#e5e5e5", "brightBlack": "#666666",
    "brightRed": "#f14c4c", "brightGreen": "#23d18b", "brightYellow": "#f5f543", "brightBlue": "#3b8eea",
    "brightMagenta": "#d670d6", "brightCyan": "#29b8db", "brightWhite": "#e5e5e5",
}


def vhs_theme(name: str, background: str = "#1e1e1e", **extra) -> dict:
    """An entry as in charmbracelet/vhs themes.json."""
    return {"name": name, **ANSI_VALUES, "background": background, "foreground": "#cccccc",
            "cursor": "#ffffff", "selection": "#264f78", "meta": {"isDark": True, "credits": None}, **extra}


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


@pytest.fixture
def conf_copy(tmp_path: Path) -> Path:
    """A copy of the project's conf/ to import into, so the real theme folder is untouched."""
    target = tmp_path / "conf"
    shutil.copytree(CONF, target)
    return target


def composed_theme(conf_dir: Path, name: str):
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        return compose("config", overrides=[f"theme={name}"]).theme


# --------------------------------------------------------------------------- importing


def test_vhs_list_import_picks_by_name_and_composes_with_hydra(tmp_path, conf_copy):
    src = write_json(tmp_path / "themes.json", [vhs_theme("3024 Day", "#f7f7f7"), vhs_theme("Ayu Mirage")])
    target = import_theme(src, name="Ayu Mirage", out_dir=conf_copy / "theme")
    assert target == conf_copy / "theme" / "ayu_mirage.yaml"
    theme = composed_theme(conf_copy, "ayu_mirage")
    assert theme.name == "ayu_mirage"
    assert theme.purple == ANSI_VALUES["magenta"] and theme.brightPurple == ANSI_VALUES["brightMagenta"]
    assert (theme.background, theme.foreground, theme.cursor) == ("#1e1e1e", "#cccccc", "#ffffff")
    assert "selection" not in theme  # nothing is ever selected in a rendered terminal
    assert theme.prompt == ANSI_VALUES["green"]  # derived
    assert theme.title_bar != theme.background
    defaults = ThemeConfig(name="x")
    assert (theme.font_family, theme.font_size, theme.padding) == (defaults.font_family, defaults.font_size,
                                                                   defaults.padding)
    OmegaConf.to_container(theme, throw_on_missing=True)


def test_name_matching_ignores_case_and_punctuation(tmp_path):
    src = write_json(tmp_path / "themes.json", [vhs_theme("Tokyo Night"), vhs_theme("Nord")])
    assert import_theme(src, name="tokyo-night", out_dir=tmp_path / "out").name == "tokyo_night.yaml"


def test_xterm_js_object_with_a_translucent_colour_and_no_name(tmp_path):
    xterm = {k: v for k, v in ANSI_VALUES.items()}
    xterm.update(background="#000000", foreground="#ffffff", cursor="rgba(255, 255, 255, 0.5)", cursorAccent="#000000",
                 selectionBackground="rgba(255, 255, 255, 0.5)", selectionForeground="#000000")
    src = write_json(tmp_path / "my-xterm.json", xterm)
    target = import_theme(src, out_dir=tmp_path / "out")
    theme = OmegaConf.merge(OmegaConf.structured(ThemeConfig), OmegaConf.load(target))
    assert theme.name == "my_xterm"  # named after the file
    assert theme.cursor == "#808080"  # half white over black
    assert theme.purple == ANSI_VALUES["magenta"]


def test_single_theme_can_be_renamed_with_name(tmp_path):
    src = write_json(tmp_path / "t.json", vhs_theme("Original"))
    target = import_theme(src, name="Mine", out_dir=tmp_path / "out")
    assert target.name == "mine.yaml" and OmegaConf.load(target).name == "mine"


def test_windows_terminal_schemes_with_purple_and_cursor_color(tmp_path):
    renamed = {"magenta": "purple", "brightMagenta": "brightPurple"}
    scheme = {renamed.get(k, k): v for k, v in ANSI_VALUES.items()}
    scheme.update(name="Campbell", background="#0c0c0c", foreground="#cccccc", cursorColor="#fffffe",
                  selectionBackground="#ffffff")
    assert "purple" in scheme and "brightPurple" in scheme
    src = write_json(tmp_path / "settings.json", {"schemes": [scheme]})
    theme = OmegaConf.load(import_theme(src, out_dir=tmp_path / "out"))
    assert theme.name == "campbell" and theme.cursor == "#fffffe" and theme.purple == ANSI_VALUES["magenta"]


def test_missing_cursor_and_title_bar_are_derived(tmp_path):
    raw = vhs_theme("Bare", "#ffffff")
    del raw["cursor"]
    theme = OmegaConf.load(import_theme(write_json(tmp_path / "bare.json", raw), out_dir=tmp_path))
    assert theme.cursor == "#cccccc"  # the foreground
    assert theme.title_bar < theme.background  # a light theme gets a darker bar


def test_title_bar_is_lighter_on_dark_and_darker_on_light_backgrounds():
    assert themes.title_bar_for((30, 30, 30))[0] > 30
    assert themes.title_bar_for((240, 240, 240))[0] < 240


def test_imported_yaml_reads_like_the_shipped_ones(tmp_path):
    src = write_json(tmp_path / "themes.json", [vhs_theme("Night Owl")])
    text = import_theme(src, out_dir=tmp_path).read_text(encoding="utf-8")
    assert text.startswith("# conf/theme/night_owl.yaml — Night Owl, imported from themes.json")
    assert list(OmegaConf.load(tmp_path / "night_owl.yaml").keys()) == list(
        OmegaConf.load(CONF / "theme" / "dark.yaml").keys())


def test_a_hostile_name_adds_no_config_line(tmp_path):
    """The theme's name goes into the file's comment and (slugged) its name: a newline, a YAML line break
    (U+0085, U+2028) or ``: `` in it cannot start a config line of its own."""
    hostile = "Evil\nbackground: '#ff0000'\u2028font_size: 99\x85padding: 1\rx: y"
    src = write_json(tmp_path / "themes.json", [vhs_theme(hostile)])
    target = import_theme(src, out_dir=tmp_path)
    loaded = OmegaConf.to_container(OmegaConf.load(target))
    assert list(loaded) == list(OmegaConf.load(CONF / "theme" / "dark.yaml").keys())  # no key added
    assert isinstance(loaded["name"], str) and "\n" not in loaded["name"]
    assert (loaded["background"], loaded["font_size"], loaded["padding"]) == ("#1e1e1e", 22, 20)
    first = target.read_text(encoding="utf-8").split("\n")[0]
    assert first.startswith("# conf/theme/") and "— Evil background: '#ff0000' font_size: 99padding: 1x: y," in first


# --------------------------------------------------------------------------- errors


def test_bad_json_names_the_file_and_position(tmp_path):
    src = tmp_path / "broken.json"
    src.write_text('{"background": "#000000",\n  "foreground": }', encoding="utf-8")
    with pytest.raises(ThemeError, match=r"broken\.json: not valid JSON \(line 2, column"):
        import_theme(src, out_dir=tmp_path)


def test_missing_colours_are_named_with_their_accepted_field_names(tmp_path):
    raw = vhs_theme("Holes")
    del raw["magenta"], raw["brightWhite"], raw["background"]
    with pytest.raises(ThemeError) as info:
        import_theme(write_json(tmp_path / "holes.json", raw), out_dir=tmp_path)
    message = str(info.value)
    assert "holes.json" in message
    assert "'background'" in message and "'purple' or 'magenta'" in message and "'brightWhite'" in message
    assert not list(tmp_path.glob("*.yaml"))  # nothing written


def test_bad_colour_value_names_the_theme_and_field(tmp_path):
    src = write_json(tmp_path / "themes.json", [vhs_theme("A"), vhs_theme("B", red="tomato")])
    with pytest.raises(ThemeError, match=r"themes\.json, theme 'B', field 'red': 'tomato' is not a colour"):
        import_theme(src, name="B", out_dir=tmp_path)


def test_list_without_name_asks_for_one_and_unknown_names_get_suggestions(tmp_path):
    src = write_json(tmp_path / "themes.json", [vhs_theme("Dracula"), vhs_theme("Nord")])
    with pytest.raises(ThemeError, match=r"holds 2 themes: choose one with --name \(e.g. 'Dracula', 'Nord'\)"):
        import_theme(src, out_dir=tmp_path)
    with pytest.raises(ThemeError, match=r"no theme named 'Dracla' \(did you mean 'Dracula'\?\)"):
        import_theme(src, name="Dracla", out_dir=tmp_path)


@pytest.mark.parametrize("data, needle", [
    ([], "holds no themes"),
    (["#000000"], "entry 1 is str, not a theme object"),
    (42, "entry 1 is int"),
])
def test_json_that_is_not_themes(tmp_path, data, needle):
    with pytest.raises(ThemeError, match=needle):
        import_theme(write_json(tmp_path / "odd.json", data), out_dir=tmp_path)


def test_existing_theme_is_kept_unless_forced(tmp_path):
    src = write_json(tmp_path / "t.json", vhs_theme("Dark"))
    (tmp_path / "dark.yaml").write_text("name: dark\n", encoding="utf-8")
    with pytest.raises(ThemeError, match=r"dark\.yaml exists: pass --force"):
        import_theme(src, out_dir=tmp_path)
    assert (tmp_path / "dark.yaml").read_text() == "name: dark\n"
    import_theme(src, out_dir=tmp_path, force=True)
    assert OmegaConf.load(tmp_path / "dark.yaml").background == "#1e1e1e"


@pytest.mark.parametrize("value, expected", [
    ("#abc", ((0xaa, 0xbb, 0xcc), 1.0)),
    ("#A0B1C2", ((0xa0, 0xb1, 0xc2), 1.0)),
    ("#ffffff80", ((255, 255, 255), 128 / 255)),
    ("rgb(1, 2, 3)", ((1, 2, 3), 1.0)),
    ("rgba(10,20,30,0.25)", ((10, 20, 30), 0.25)),
])
def test_parse_colour_forms(value, expected):
    assert parse_colour(value, "here") == expected


@pytest.mark.parametrize("value", ["red", "#12345", "rgb(300, 0, 0)", "", None, 12])
def test_parse_colour_rejects_the_rest(value):
    with pytest.raises(ThemeError, match="here: .* is not a colour"):
        parse_colour(value, "here")


# --------------------------------------------------------------------------- command line and shipped themes


def test_cli_import_and_list(tmp_path, capsys):
    src = write_json(tmp_path / "themes.json", [vhs_theme("One"), vhs_theme("Two Words")])
    assert themes.main(["list", str(src)]) == 0
    listed = capsys.readouterr().out
    assert "One" in listed and "two_words" in listed
    assert themes.main(["import", str(src), "--name", "Two Words", "--out", str(tmp_path)]) == 0
    assert "theme=two_words" in capsys.readouterr().out
    assert themes.main(["list", "--dir", str(tmp_path)]) == 0
    assert "two_words" in capsys.readouterr().out


def test_cli_errors_go_to_stderr_with_exit_code_1(tmp_path, capsys):
    assert themes.main(["import", str(tmp_path / "nope.json"), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nope.json: cannot read it" in err


@pytest.mark.parametrize("path", sorted((CONF / "theme").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_themes_validate(path):
    theme = OmegaConf.load(path)
    themes.validate(OmegaConf.to_container(theme))
    assert theme.name == path.stem
    for field in themes.COLOUR_FIELDS:
        parse_colour(theme[field], f"{path.name}: {field}")


def test_imported_themes_land_in_the_user_config_dir_where_hydra_finds_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RENDERER_CONFIG_DIR", str(tmp_path / "mine"))
    src = write_json(tmp_path / "themes.json", [vhs_theme("Two Words")])
    assert themes.main(["import", str(src)]) == 0
    assert (tmp_path / "mine" / "theme" / "two_words.yaml").is_file()
    capsys.readouterr()
    assert themes.main(["list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert {"dark", "dracula", "two_words"} <= set(listed)  # the packaged themes and the user's own
    cfg = compose_cfg("theme=two_words")
    assert cfg.theme.name == "two_words" and cfg.theme.background == vhs_theme("Two Words")["background"].lower()
