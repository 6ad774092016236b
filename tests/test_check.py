"""renderer.cli.check: the command-line script checker, run as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

GOOD_LOG = """\
SCRIPT: LOG_0009 — GOOD
A subtitle

[0:00 – Cold Open | Boot]
Visual: A terminal wakes.
ON-SCREEN TEXT:
$ boot
ok
Narration (Winston – low):
“We didn’t build gods… we built mirrors.”

[0:10] Second
Narration: Short.
END LOG_0009
"""

GOOD_MARKDOWN = """\
# Good Screenplay

## Scene 1: Arrival
*A ship.*
**Anya**: We’re here.
"""

BAD_LOG = """\
SCRIPT: LOG_0010 — BAD

[0:30 – First]
Narration: one two three four five six seven eight nine ten
[0:10 – Second]
Music: swells
[1:7x – Third]
hi
"""


def check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "renderer.check", *args], capture_output=True, text=True,
                          encoding="utf-8", cwd=ROOT, timeout=60)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {"good.txt": GOOD_LOG, "good.md": GOOD_MARKDOWN, "bad.txt": BAD_LOG}
    for name, text in paths.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return {name: tmp_path / name for name in paths}


def test_good_files_print_their_structure_and_exit_0(files):
    result = check(str(files["good.txt"]), str(files["good.md"]))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"{files['good.txt']} (log): LOG_0009 — GOOD" in out
    assert f"{files['good.md']} (markdown): Good Screenplay" in out
    assert "A subtitle" in out
    lines = out.splitlines()
    first = next(line for line in lines if "Cold Open | Boot" in line).split()
    assert first[:5] == ["1", "4", "0:00", "10", "s"] and first[-2:] == ["1", "2"]  # narration, on-screen counts
    second = next(line for line in lines if "Second" in line).split()
    assert second[:5] == ["2", "12", "0:10", "4", "s"] and second[-2:] == ["1", "0"]
    assert out.count("no issues") == 2
    assert "2 file(s) checked, all OK: 0 error(s), 0 warning(s)" in out


def test_bad_file_names_file_line_message_and_hint_and_exits_1(files):
    bad = str(files["bad.txt"])
    result = check(str(files["good.txt"]), bad)
    assert result.returncode == 1, result.stderr
    out = result.stdout
    rows = {line.split()[2]: line.split(None, 3) for line in out.splitlines()  # code → severity, where, code, message
            if line.strip().startswith(("error", "warning"))}
    assert {code: (severity, where) for code, (severity, where, _, _) in rows.items()} == {
        "narration_too_long": ("warning", f"{bad}:4"),
        "timestamp_backwards": ("error", f"{bad}:5"),
        "empty_scene": ("warning", f"{bad}:5"),
        "unknown_label": ("warning", f"{bad}:6"),
        "bad_timestamp": ("error", f"{bad}:7"),
    }
    assert rows["timestamp_backwards"][3] == "timestamp 0:10 comes before the previous scene's 0:30"
    assert "“1:7x”" in rows["bad_timestamp"][3] and "10 words" in rows["narration_too_long"][3]
    assert "hint: Put scenes in time order or fix the timestamp." in out
    assert "hint: Write the time as M:SS" in out
    assert "1 with errors: 2 error(s), 3 warning(s)" in out


def test_json_output(files):
    result = check("--json", str(files["good.md"]), str(files["bad.txt"]))
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert [(d["file"], d["format"], d["title"]) for d in data] == [
        (str(files["good.md"]), "markdown", "Good Screenplay"),
        (str(files["bad.txt"]), "log", "BAD"),
    ]
    assert data[0]["issues"] == [] and data[0]["scenes"][0]["narration"][0]["speaker"] == "Anya"
    assert [s["start"] for s in data[1]["scenes"]] == [30.0, 10.0, 10.0]
    issue = next(i for i in data[1]["issues"] if i["code"] == "bad_timestamp")
    assert issue["severity"] == "error" and issue["line"] == 7 and issue["file"] == str(files["bad.txt"])
    assert issue["message"].startswith(f"{files['bad.txt']}:7: ") and issue["hint"]


def test_options_change_the_result(files):
    as_log = json.loads(check("--json", "--format", "log", str(files["good.md"])).stdout)[0]
    assert as_log["format"] == "log" and [i["code"] for i in as_log["issues"]] == ["no_scenes"]
    slow = check("--wpm", "20", str(files["good.txt"]))  # 8 words at 20 wpm = 24 s > 10 s scene
    assert slow.returncode == 0 and "narration_too_long" in slow.stdout and "20 words per minute" in slow.stdout
    for flag in ("--char-limit", "--max-chars"):  # the old spelling still works
        limited = check(flag, "10", str(files["good.txt"]))
        assert limited.returncode == 0 and "narration_over_limit" in limited.stdout


def test_the_request_limit_is_the_voice_schema_s(tmp_path):
    """voice.char_limit, the one narration limit: the checker warns past ElevenLabs' default, as a render with
    voice=elevenlabs does."""
    from renderer.config import ElevenLabsVoiceConfig

    limit = ElevenLabsVoiceConfig().char_limit
    path = tmp_path / "long.txt"
    path.write_text("[0:00 – A]\nNarration: " + "x" * (limit + 1) + "\n", encoding="utf-8")
    result = check(str(path))
    assert result.returncode == 0 and "narration_over_limit" in result.stdout
    assert f"{limit:,}-character limit" in result.stdout
    assert "narration_over_limit" not in check("--char-limit", "0", str(path)).stdout


def test_work_past_the_limits_is_an_error_with_the_setting_to_raise(tmp_path):
    """A 10-hour scene, 600 one-word scenes, a 200,000-space line: errors naming file, line and the fix, at once."""
    from renderer.config import ScriptConfig

    long_scene = tmp_path / "long.txt"
    long_scene.write_text("[0:00 – A]\nhi\n[10:00:00 – B]\nho\n", encoding="utf-8")
    many = tmp_path / "many.txt"
    many.write_text("".join(f"[{i}:00 – S{i}]\nword\n" for i in range(ScriptConfig().max_scenes + 100)))
    wide = tmp_path / "wide.txt"
    wide.write_text("[0:00 – A]\nhi\n" + " " * 200_000 + "x\n", encoding="utf-8")
    result = check(str(long_scene), str(many), str(wide))
    assert result.returncode == 1, result.stdout
    for where, code, setting in ((f"{long_scene}:1", "scene_too_long", "script.max_scene_s=… (python -m "
                                  "renderer.check --max-scene-s …)"),
                                 (f"{many}:{2 * ScriptConfig().max_scenes + 1}", "too_many_scenes", "--max-scenes"),
                                 (f"{wide}:3", "line_too_long", "script.max_line_chars=")):
        assert where in result.stdout and code in result.stdout and setting in result.stdout
    raised = check("--max-scene-s", "0", "--max-duration-s", "0", "--max-scenes", "1000", "--max-line-chars", "0",
                   str(long_scene),
                   str(many), str(wide))
    assert raised.returncode == 0, raised.stdout


def test_titles_cannot_drive_the_terminal(tmp_path):
    """A title with an OSC 52 clipboard write and a clear-screen is printed without them."""
    path = tmp_path / "evil.txt"
    path.write_text("SCRIPT: LOG_1 — Evil\x1b]52;c;ZWNobyBvd25lZA==\x07\x1b[2J Title\n"
                    "[0:00 – Scene\x1b[2J One]\n[0:05 – Two]\nhi\n", encoding="utf-8")
    result = check(str(path))
    assert "LOG_1 — Evil Title" in result.stdout and "Scene One" in result.stdout  # the empty_scene warning too
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout


def test_missing_file_is_an_error_not_a_crash(tmp_path):
    result = check(str(tmp_path / "nope.txt"))
    assert result.returncode == 1 and "unreadable_file" in result.stdout and "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [[], ["--format", "yaml", "x.txt"], ["--wpm", "0", "x.txt"], ["--wpm", "fast", "x"]])
def test_usage_errors_exit_2(args):
    result = check(*args)
    assert result.returncode == 2 and "usage:" in result.stderr and "Traceback" not in result.stderr


def test_sample_scripts_are_clean():
    samples = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "scripts").glob("*") if p.suffix in (".txt", ".md"))
    result = check(*samples)
    assert result.returncode == 0, result.stdout
    assert f"{len(samples)} file(s) checked, all OK" in result.stdout
