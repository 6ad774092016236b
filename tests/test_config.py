"""The config tree composes, every group option loads, and mistakes fail before any work starts."""

from __future__ import annotations

import inspect
import re
from dataclasses import fields

import pytest
from hydra.core.config_store import ConfigStore
from hydra.errors import ConfigCompositionException
from hydra.utils import get_class
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from renderer.config import (
    BackdropVisualConfig,
    PiperVoiceConfig,
    ProceduralVisualConfig,
)
from renderer.providers.chain import OFFLINE, make, stand_in_settings
from tests.conftest import CONF, compose_cfg, run_cli

GROUPS = ["voice", "visual", "theme", "assembly", "format", "limits", "breaker", "retry"]


def test_defaults_compose_to_the_offline_setup():
    cfg = compose_cfg()
    assert cfg.voice.name == "piper" and cfg.visual.name == "procedural"
    assert cfg.assembly.strategy == "overlay" and cfg.theme.name == "dark"
    assert (cfg.format.width, cfg.format.height) == (1280, 720)
    assert list(cfg.batch.inputs) == ["scripts/*.txt", "scripts/*.md"]
    assert cfg.breaker.elevenlabs.fail_max == 5 and cfg.breaker.runway.fail_max == 3


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_of_every_group_composes(group):
    options = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
    assert options
    for option in options:
        cfg = compose_cfg(f"{group}={option}")
        assert cfg[group] is not None


def test_required_options_exist():
    have = {g: {p.stem for p in (CONF / g).glob("*.yaml")} for g in GROUPS + ["experiment"]}
    assert {"espeak", "silent"} <= have["voice"]
    assert {"dark", "light", "matrix", "hacker", "vscode"} <= have["theme"]
    assert {"overlay", "visual_only", "ui_only", "audio_only"} <= have["assembly"]
    assert {"landscape_720p", "landscape_1080p", "portrait_1080", "square_1080"} <= have["format"]
    assert {"cinematic", "draft"} <= have["experiment"]


def test_experiments_are_added_not_defaulted():
    assert compose_cfg().experiment == ""
    cinematic = compose_cfg("+experiment=cinematic")
    assert cinematic.experiment == "cinematic"
    assert (cinematic.format.width, cinematic.format.height) == (1920, 1080)
    assert cinematic.assembly.transition_s > 0
    draft = compose_cfg("+experiment=draft")
    assert draft.format.width == 640 and draft.encode.preset == "ultrafast"


def test_unknown_group_option_fails():
    with pytest.raises(ConfigCompositionException, match="matirx"):
        compose_cfg("theme=matirx")


def test_wrong_type_fails():
    with pytest.raises(ConfigCompositionException, match="limits.max_jobs=abc") as info:
        compose_cfg("limits.max_jobs=abc")
    assert isinstance(info.value.__cause__, ValidationError)


def test_unknown_key_fails():
    with pytest.raises(ConfigCompositionException, match="thme"):
        compose_cfg("thme.background=red")


@pytest.mark.parametrize("theme", sorted(p.stem for p in (CONF / "theme").glob("*.yaml")))
def test_every_theme_sets_every_colour(theme):
    values = OmegaConf.to_container(compose_cfg(f"theme={theme}").theme, throw_on_missing=True)
    colours = {k: v for k, v in values.items() if k not in ("name", "font_family", "comment") and isinstance(v, str)}
    assert len(colours) == 21  # background, foreground, prompt, cursor, title_bar and the 16 ANSI colours
    assert all(re.fullmatch(r"#[0-9a-fA-F]{6}", v) for v in colours.values()), colours


@pytest.mark.parametrize("override, needle", [("theme=matirx", "matirx"), ("limits.max_jobs=abc", "max_jobs")])
def test_cli_typo_fails_fast_with_hydra_message(override, needle, tmp_path):
    result = run_cli(override, f"hydra.run.dir={tmp_path / 'run'}", timeout=60)
    assert result.returncode != 0
    assert needle in result.stderr
    assert not (tmp_path / "run" / "manifest.json").exists()


SCHEMAS = {"limits": "LimitsConfig", "breaker": "BreakerConfig", "retry": "RetryConfig", "assembly": "AssemblyConfig",
           "format": "FormatConfig"}


def _schema_of(group: str, path):
    from renderer import config

    if group in SCHEMAS:
        return getattr(config, SCHEMAS[group])
    schema = next(d for d in OmegaConf.load(path).defaults if str(d).endswith("_schema"))  # e.g. espeak_schema
    stored = ConfigStore.instance().repo[group][f"{schema}.yaml"].node  # as register_configs() stored it
    return OmegaConf.get_type(stored)


@pytest.mark.parametrize("path", sorted(p for g in [*SCHEMAS, "voice", "visual"] for p in (CONF / g).glob("*.yaml")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_option_files_select_and_never_restate_a_default(path):
    """Defaults live in the schema alone: an option file sets only what makes it that option."""
    defaults = OmegaConf.structured(_schema_of(path.parent.name, path))
    chosen = OmegaConf.to_container(OmegaConf.load(path))
    chosen.pop("defaults", None)

    def restated(node, default, prefix=""):
        for key, value in node.items():
            base = OmegaConf.select(default, key, default=None) if not OmegaConf.is_missing(default, key) else None
            if isinstance(value, dict) and OmegaConf.is_config(base):
                yield from restated(value, base, f"{prefix}{key}.")
            elif base is not None and value == (OmegaConf.to_container(base) if OmegaConf.is_config(base) else base):
                yield f"{prefix}{key}"

    assert list(restated(chosen, defaults)) == []


def test_root_config_restates_no_default():
    root = OmegaConf.to_container(OmegaConf.load(CONF / "config.yaml"))
    assert set(root) == {"defaults", "hydra"}


def _provider_schemas() -> list[type]:
    """Every provider's schema: the voice= and visual= options' and the stand-ins'."""
    stored = {OmegaConf.get_type(entry.node) for group in ("voice", "visual")
              for entry in ConfigStore.instance().repo[group].values()}
    return sorted(stored | {schema for chain in OFFLINE.values() for schema in chain}, key=lambda s: s.__name__)


@pytest.mark.parametrize("schema", _provider_schemas(), ids=lambda s: s.__name__)
def test_provider_constructors_take_the_schema_and_restate_no_default(schema):
    """Defaults live in the schema alone: a provider takes each of its schema's settings (as instantiate passes
    them), none with a default of its own."""
    params = inspect.signature(get_class(schema._target_).__init__).parameters
    settings = [f.name for f in fields(schema) if f.name != "_target_"]
    assert sorted(name for name in params if name != "self") == sorted(settings)
    assert [name for name in settings if params[name].default is not inspect.Parameter.empty] == []


@pytest.mark.parametrize("schema", [s for chain in OFFLINE.values() for s in chain], ids=lambda s: s.__name__)
def test_every_stand_in_builds_from_its_schema_alone(schema):
    assert make(schema).name == schema.name


def test_a_stand_in_takes_the_configured_settings_of_its_names_but_voices():
    """What a stand-in is built with (renderer/providers/chain.py): runway's and the library's look for the
    procedural one; no voice names from another provider; nothing from a configured provider of its own kind."""
    runway = compose_cfg("visual=runway", "visual.sources=[life]", "visual.fps=5").visual
    assert stand_in_settings(ProceduralVisualConfig, runway) == {"scale": 0.25, "fps": 5, "sources": ["life"]}
    assert stand_in_settings(BackdropVisualConfig, runway) == {}
    library = compose_cfg("visual=library", "visual.dir=/media", "visual.fps=8").visual
    assert stand_in_settings(ProceduralVisualConfig, library) == {"fps": 8}
    eleven = compose_cfg("voice=elevenlabs", "voice.speakers={Winston: pNInz6obpgDQGcFmaJgB}").voice
    assert [stand_in_settings(s, eleven) for s in OFFLINE["voice"]] == [{}, {}, {}]
    piper = compose_cfg("voice.model=/nowhere/voice.onnx").voice
    assert stand_in_settings(PiperVoiceConfig, piper) == {}  # the bundled voice stands in for a model that failed


@pytest.mark.parametrize("voice", ["espeak", "piper", "elevenlabs"])
def test_speakers_can_be_cast_from_the_command_line(voice):
    cfg = compose_cfg(f"voice={voice}", "voice.speakers={Winston: some-voice}", "voice.speakers.Anya=other")
    assert dict(cfg.voice.speakers) == {"Winston": "some-voice", "Anya": "other"}
    with pytest.raises(ConfigCompositionException):
        compose_cfg(f"voice={voice}", "voice.speakrs={Winston: x}")  # the group itself still refuses typos
