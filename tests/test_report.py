"""report.html: built from the manifest, every value escaped."""

from __future__ import annotations

from pathlib import Path

from renderer import report


def test_report_escapes_everything_it_shows(tmp_path: Path):
    manifest = {
        "started": "2026-11-25T10:00:00+00:00", "finished": "2026-11-25T10:05:00+00:00", "seconds": 300,
        "settings": {"theme": "dark"}, "unmatched_inputs": ["missing/*.txt"],
        "cache": {"hits": 3, "misses": 7},
        "scripts": {
            "good": {"script": "/s/good.txt", "status": "ok", "duration": 65.0, "seconds": 20.0,
                     "outputs": {"mp4": "/run/good/good.mp4"}, "fallbacks": [
                         {"node": "voice/0", "to": "espeak", "reason": "ServiceError: <b>429</b>"}],
                     "warnings": [], "issues": []},
            "bad": {"script": "/s/bad.txt", "status": "failed", "error": "bad.txt:3: <script>alert(1)</script>",
                    "fallbacks": [], "warnings": [], "issues": []},
        },
    }
    page = report.write(manifest, tmp_path).read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;429&lt;/b&gt;" in page
    assert '<video controls preload="none" src="good/good.mp4">' in page
    assert "1 / 2" in page and "1:05" in page and "3 / 10" in page
    assert "no file matches missing/*.txt" in page
    assert page.index(">bad<") < page.index(">good<")  # scripts in name order
