"""The renderer's ffmpeg commands across ffmpeg's versions: the distribution's (5.1 here) and, where the
imageio-ffmpeg package is installed, its static ffmpeg (9.x), which has dropped options 5.1 still needs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from renderer.media import ffmpeg, tool_notes

GRAPH = "[0:v]drawbox=x=0:y=0:w=8:h=8:color=white:t=fill[v]\n"


def static_ffmpeg() -> str | None:
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:
        return None


def version(binary: str) -> str:
    return subprocess.run([binary, "-version"], capture_output=True, text=True, check=True).stdout.split()[2]


@pytest.mark.parametrize("which", ["system", "static"])
def test_a_filter_graph_is_read_from_its_file_as_each_ffmpeg_spells_it(which, tmp_path, monkeypatch):
    """5.1 reads it with -filter_complex_script, which ffmpeg 8 dropped for ffmpeg 7's -/filter_complex: the
    spelling is tried once per binary, noted, and a frame is drawn through it."""
    binary = ffmpeg.binary("ffmpeg") if which == "system" else static_ffmpeg()
    if binary is None:
        pytest.skip("imageio-ffmpeg (a static ffmpeg) is not installed")
    monkeypatch.setenv("FFMPEG_PATH", binary)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ffmpeg._graph_option.cache_clear()
    (tmp_path / "g.filter").write_text(GRAPH, encoding="utf-8")
    args = ffmpeg.graph_file("g.filter")
    major = int(version(binary).lstrip("n").split(".")[0])
    assert args[0] == ("-/filter_complex" if major >= 7 else "-filter_complex_script")
    ffmpeg.run(["-f", "lavfi", "-i", "color=black:s=32x32:d=0.1", *args, "-map", "[v]", "-frames:v", "1",
                "-f", "rawvideo", "-pix_fmt", "gray", "frame.raw"], cwd=tmp_path)
    frame = (tmp_path / "frame.raw").read_bytes()
    assert frame[0] > 200 and frame[-1] < 50  # the box the graph drew, in the corner it drew it
    noted = json.loads(tool_notes.cache_file().read_text(encoding="utf-8"))
    assert [n[ffmpeg.GRAPH_FILE_TRIAL]["option"] for n in noted.values()] == [args[0]]
    ffmpeg._graph_option.cache_clear()
    assert ffmpeg.graph_file(Path("g.filter")) == args  # the note's answer
