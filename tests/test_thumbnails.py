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
print("\\n".join(str(p) for p in thumbnails.extract([(video, 30.0)], timeline, work, timeout=300)))
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
