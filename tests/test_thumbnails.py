"""Thumbnails of a finished video (renderer/media/thumbnails.py): one per scene from its midpoint, however many
scenes, in a process that may open few files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ffprobe

UNDER_A_LOW_FILE_LIMIT = """
import resource, sys
from pathlib import Path
from renderer.media import thumbnails

resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
video, work, scenes = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
timeline = [{"start": 0.2 * i, "duration": 0.2} for i in range(scenes)]
print("\\n".join(str(p) for p in thumbnails.extract([(video, 30.0)], timeline, work, fps=10, timeout=300)))
"""


def test_hundreds_of_scenes_get_their_thumbnails_under_a_low_open_file_limit(tmp_path: Path):
    video = tmp_path / "video.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=s=64x36:r=10:d=30", "-c:v", "libx264",
                    "-preset", "ultrafast", "-g", "10", str(video)], check=True)
    result = subprocess.run([sys.executable, "-c", UNDER_A_LOW_FILE_LIMIT, str(video), str(tmp_path), "150"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    images = [Path(line) for line in result.stdout.split()]
    assert len(images) == 150 and len(set(images)) == 150
    for image in images[::30] + images[-1:]:
        assert ffprobe(image)["streams"][0]["width"] == 160


def coloured_pieces(folder: Path, colours: tuple[tuple[str, float], ...]) -> list[tuple[Path, float]]:
    pieces = []
    for colour, seconds in colours:
        path = folder / f"{colour}.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"color=c={colour}:s=64x36:r=10:d={seconds}",
                        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)], check=True)
        pieces.append((path, seconds))
    return pieces


def mean_rgb(image: Path) -> list[float]:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(image), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    return [sum(raw[c::3]) / (len(raw) / 3) for c in range(3)]


def test_each_scene_s_thumbnail_comes_from_the_piece_playing_at_its_midpoint(tmp_path: Path):
    """The video as its segments: red 1.0 s, a 0.4 s window of green between, blue 1.6 s; scenes of 1.2 s and
    1.8 s have their midpoints (0.6 s, 2.1 s) in the red and the blue piece."""
    from renderer.media import thumbnails

    pieces = coloured_pieces(tmp_path, (("red", 1.0), ("green", 0.4), ("blue", 1.6)))
    images = thumbnails.extract(pieces, [{"start": 0.0, "duration": 1.2}, {"start": 1.2, "duration": 1.8}],
                                tmp_path, fps=10, timeout=60)
    (r1, g1, b1), (r2, g2, b2) = (mean_rgb(image) for image in images)
    assert r1 > 200 and g1 < 60 and b1 < 60
    assert b2 > 200 and r2 < 60 and g2 < 60


def test_a_midpoint_on_the_join_of_two_pieces_is_the_next_piece_s_first_frame(tmp_path: Path):
    """Pieces of 0.1, 0.2 and 0.3 s: the third starts at 0.1 + 0.2, a hair past 0.3 in floats, where a 0.6 s
    scene's midpoint is. It is the blue piece's first frame, not a seek past the green one's last (no image)."""
    from renderer.media import thumbnails

    pieces = coloured_pieces(tmp_path, (("red", 0.1), ("green", 0.2), ("blue", 0.3)))
    (image,) = thumbnails.extract(pieces, [{"start": 0.0, "duration": 0.6}], tmp_path, fps=10, timeout=60)
    r, g, b = mean_rgb(image)
    assert b > 200 and r < 60 and g < 60
