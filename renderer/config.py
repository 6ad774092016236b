"""Structured config: the schema every YAML file under conf/ is merged into.

Registered in Hydra's ConfigStore so that an override with a wrong type (``limits.max_jobs=abc``) or an
unknown key fails at composition time with Hydra's own message, before any work starts.
Provider groups (voice, visual) are typed per provider: each YAML names its schema in its defaults list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


# --- providers -------------------------------------------------------------------------------------------
@dataclass
class EspeakVoiceConfig:
    _target_: str = "renderer.providers.espeak.EspeakVoice"
    name: str = "espeak"
    voice: str = "en-us"
    rate: int = 160  # words per minute
    pitch: int = 45  # 0..99
    amplitude: int = 120  # 0..200
    word_gap: int = 1  # extra pause between words, in 10 ms units
    speakers: dict[str, str] = field(default_factory=dict)  # speaker name -> espeak voice


@dataclass
class SilentVoiceConfig:
    _target_: str = "renderer.providers.silent.SilentVoice"
    name: str = "silent"
    words_per_minute: float = 150.0


@dataclass
class ProceduralVisualConfig:
    _target_: str = "renderer.providers.procedural.ProceduralVisual"
    name: str = "procedural"
    scale: float = 0.25  # render at this fraction of the output size; assembly scales up
    fps: int = 12
    sources: list[str] = field(default_factory=lambda: ["gradients", "plasma", "life", "mandelbrot"])


# --- look and layout -------------------------------------------------------------------------------------
@dataclass
class ThemeConfig:
    name: str = MISSING
    background: str = MISSING
    foreground: str = MISSING
    prompt: str = MISSING
    cursor: str = MISSING
    selection: str = MISSING
    black: str = MISSING
    red: str = MISSING
    green: str = MISSING
    yellow: str = MISSING
    blue: str = MISSING
    purple: str = MISSING
    cyan: str = MISSING
    white: str = MISSING
    brightBlack: str = MISSING
    brightRed: str = MISSING
    brightGreen: str = MISSING
    brightYellow: str = MISSING
    brightBlue: str = MISSING
    brightPurple: str = MISSING
    brightCyan: str = MISSING
    brightWhite: str = MISSING
    title_bar: str = MISSING
    comment: str = ""  # colour of '#' lines; empty = brightBlack
    font_family: str = "DejaVu Sans Mono"
    font_size: int = 22  # pixels at 720p
    line_spacing: float = 1.3
    padding: int = 20  # pixels at 720p
    window_chrome: bool = True
    panel_opacity: float = 0.9


@dataclass
class PanelConfig:
    """Where the terminal sits, as fractions of the frame."""

    x: float = 0.05
    y: float = 0.45
    w: float = 0.6
    h: float = 0.48


@dataclass
class AssemblyConfig:
    strategy: str = MISSING  # overlay | visual_only | ui_only | audio_only
    panel: PanelConfig = field(default_factory=PanelConfig)
    transition_s: float = 0.0  # fade through black at scene cuts (timeline length unchanged)
    grade: str = ""  # extra ffmpeg video filter applied to the visual (e.g. eq/vignette), from trusted config


@dataclass
class FormatConfig:
    name: str = MISSING
    width: int = MISSING
    height: int = MISSING
    fps: int = 25


@dataclass
class EncodeConfig:
    preset: str = "veryfast"
    crf: int = 23
    audio_bitrate: str = "128k"
    audio_rate: int = 48000


@dataclass
class TerminalConfig:
    """Typing rhythm of the on-screen terminal."""

    command_ms_per_char: int = 50
    comment_ms_per_char: int = 30
    output_pause_ms: int = 250
    line_pause_ms: int = 350
    start_delay_ms: int = 400
    cursor_blink_ms: int = 530


# --- operations ------------------------------------------------------------------------------------------
@dataclass
class LimitsConfig:
    memory_gb: float = 2.0
    max_jobs: int = 3
    stage_threads: int = 4
    ffmpeg_timeout_s: float = 300.0
    api_timeout_s: float = 60.0


@dataclass
class BreakerServiceConfig:
    fail_max: int = 5
    reset_timeout_s: float = 60.0


@dataclass
class BreakerConfig:
    elevenlabs: BreakerServiceConfig = field(default_factory=BreakerServiceConfig)
    runway: BreakerServiceConfig = field(default_factory=lambda: BreakerServiceConfig(3, 120.0))


@dataclass
class RetryPolicyConfig:
    attempts: int = 2
    wait_s: float = 1.0
    max_wait_s: float = 30.0
    exponential: bool = False
    jitter_s: float = 0.0


@dataclass
class RetryConfig:
    parse: RetryPolicyConfig = field(default_factory=RetryPolicyConfig)
    assembly: RetryPolicyConfig = field(default_factory=lambda: RetryPolicyConfig(2, 2.0, exponential=True))
    api: RetryPolicyConfig = field(default_factory=lambda: RetryPolicyConfig(4, 1.0, 30.0, True, 1.0))


@dataclass
class ScriptConfig:
    words_per_minute: float = 150.0  # for timing estimates when a script gives none
    min_last_scene_s: float = 4.0


@dataclass
class FFmpegConfig:
    """Binaries to use; empty = $FFMPEG_PATH / $FFPROBE_PATH, then PATH."""

    path: str = ""
    probe_path: str = ""


@dataclass
class BatchConfig:
    inputs: list[str] = field(default_factory=lambda: ["scripts/*.txt"])
    n_jobs: int = 2
    backend: str = "loky"  # any joblib backend: loky | threading | sequential | dask


@dataclass
class RendererConfig:
    voice: Any = MISSING
    visual: Any = MISSING
    theme: ThemeConfig = MISSING
    assembly: AssemblyConfig = MISSING
    format: FormatConfig = MISSING
    limits: LimitsConfig = MISSING
    breaker: BreakerConfig = MISSING
    retry: RetryConfig = MISSING
    encode: EncodeConfig = field(default_factory=EncodeConfig)
    terminal: TerminalConfig = field(default_factory=TerminalConfig)
    script: ScriptConfig = field(default_factory=ScriptConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    ffmpeg: FFmpegConfig = field(default_factory=FFmpegConfig)
    experiment: str = ""  # set by the experiment preset, shown in the manifest


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="renderer_schema", node=RendererConfig)
    cs.store(group="voice", name="espeak_schema", node=EspeakVoiceConfig)
    cs.store(group="voice", name="silent_schema", node=SilentVoiceConfig)
    cs.store(group="visual", name="procedural_schema", node=ProceduralVisualConfig)


register_configs()
