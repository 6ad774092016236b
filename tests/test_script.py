"""renderer.script and renderer.script.parsers.log: the model, format dispatch, the LOG parser, validation, split_text."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from dataclasses import MISSING, asdict, fields, replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from renderer.config import ElevenLabsVoiceConfig, ScriptConfig
from renderer.script import (
    Issue,
    Options,
    Script,
    detect_format,
    format_time,
    parse_file,
    parse_log,
    parse_markdown,
    parse_text,
    read_text,
    split_text,
)
from tests.conftest import OPTIONS, model_fields

SCRIPTS_DIR = Path(__file__).resolve().parent.parent / "scripts"


def parse(text: str, **options) -> Script:
    return parse_log(text, "t.txt", options=replace(OPTIONS, **options))


def codes(script: Script) -> list[tuple[str, int | None]]:
    return [(i.code, i.line) for i in script.issues]


def one_scene(body: str) -> Script:
    """`body` as the content of a single scene (header on line 1, body from line 2)."""
    return parse("[0:00 – Scene]\n" + body)


# --------------------------------------------------------------------------- SCRIPT header


def test_script_line_gives_id_title_and_subtitle():
    s = parse("SCRIPT: LOG_0002 — THE DESCENT\nRecovered AI Incident Log — subtitle\n\n[0:00 – A]\nNarration: hi\n")
    assert (s.script_id, s.title, s.subtitle) == ("LOG_0002", "THE DESCENT", "Recovered AI Incident Log — subtitle")
    assert s.format == "log" and s.path == "t.txt" and s.issues == []


@pytest.mark.parametrize("dash", ["—", "–", "-"])
def test_script_line_any_dash(dash):
    s = parse(f"SCRIPT: LOG-7 {dash} Title Here\n[0:00 – A]\nhi\n")
    assert (s.script_id, s.title) == ("LOG-7", "Title Here")


def test_script_line_without_id_uses_whole_value():
    s = parse("SCRIPT: The Descent - Part Two\n[0:00 – A]\nhi\n")
    assert (s.script_id, s.title) == (None, "The Descent - Part Two")


def test_title_falls_back_to_file_stem():
    assert parse_log("[0:00 – A]\nhi\n", "scripts/descent.txt", options=OPTIONS).title == "descent"
    s = parse_log("SCRIPT: LOG_0009\n[0:00 – A]\nhi\n", "x/handshake.txt", options=OPTIONS)
    assert (s.script_id, s.title) == ("LOG_0009", "handshake")


def test_subtitle_is_optional_and_skips_blank_lines():
    assert parse("SCRIPT: X\n[0:00 – A]\nhi\n").subtitle is None
    assert parse("SCRIPT: X\n\nSub title\n[0:00 – A]\nhi\n").subtitle == "Sub title"
    s = parse("SCRIPT: X\nVisual: not a subtitle\n[0:00 – A]\nhi\n")
    assert s.subtitle is None and codes(s) == [("text_before_first_scene", 2)]


# --------------------------------------------------------------------------- scene headers


@pytest.mark.parametrize(
    "header, title, subtitle",
    [
        ("[1:05 – Cold Open]", "Cold Open", None),
        ("[1:05 — Cold Open]", "Cold Open", None),
        ("[1:05 - Cold Open]", "Cold Open", None),
        ("[1:05–Cold Open]", "Cold Open", None),
        ("  [ 1:05   -   Cold Open ]  ", "Cold Open", None),
        ("[1:05 – Cold Open | Terminal Boot-Up]", "Cold Open", "Terminal Boot-Up"),
        ("[1:05 - Cold Open|Boot]", "Cold Open", "Boot"),
        ("[1:05] Cold Open", "Cold Open", None),
        ("[1:05]   Cold Open | Boot", "Cold Open", "Boot"),
        ("[1:05] – Cold Open", "Cold Open", None),
    ],
)
def test_scene_header_forms(header, title, subtitle):
    s = parse(f"[0:00 – First]\nhi\n{header}\nNarration: x\n")
    scene = s.scenes[1]
    assert (scene.start, scene.title, scene.subtitle, scene.line) == (65.0, title, subtitle, 3)
    assert s.issues == []


def test_hours_minutes_seconds_and_long_minutes():
    s = parse("[0:59 – A]\nhi\n[1:02:03 – B]\nhi\n[75:00 – C]\nhi\n", max_scene_s=0)  # an hour-long scene
    assert [sc.start for sc in s.scenes] == [59.0, 3723.0, 4500.0]
    assert [sc.index for sc in s.scenes] == [0, 1, 2]
    assert s.issues == []


@pytest.mark.parametrize("seconds, text", [(0, "0:00"), (0.4, "0:00"), (59.6, "1:00"), (65, "1:05"), (196, "3:16"),
                                           (3599, "59:59"), (3723, "1:02:03"), (4500, "1:15:00")])
def test_format_time_writes_what_a_header_reads(seconds, text):
    """The one m:ss / h:mm:ss of the renderer (check, report.html, watch): whole seconds, as scene headers say."""
    assert format_time(seconds) == text
    assert parse(f"[{text} – A]\nhi\n").scenes[0].start == round(seconds)


def test_bracketed_non_headers_are_text():
    s = one_scene("[Beat]\n[2 seconds later]\n[v2: draft]\n")
    assert [n.text for n in s.scenes[0].narration] == ["[Beat]", "[2 seconds later]", "[v2: draft]"]
    assert len(s.scenes) == 1 and s.issues == []


def test_header_without_title_gets_a_numbered_title():
    s = parse("[0:00]\nhi\n[0:10]\nho\n")
    assert [sc.title for sc in s.scenes] == ["Scene 1", "Scene 2"]


# --------------------------------------------------------------------------- durations


def test_durations_run_to_next_timestamp_and_last_is_estimated():
    words = " ".join(["word"] * 30)  # 30 words at 150 wpm = 12 s (+1 s) = 13 s
    s = parse(f"[0:00 – A]\nhi\n[0:20 – B]\nhi\n[1:05 – C]\nNarration: “{words}”\n")
    assert [sc.duration for sc in s.scenes] == [20.0, 45.0, 13.0]
    assert s.duration == 65.0 + 13.0


def test_last_scene_minimum_and_rounding_up():
    assert parse("[0:00 – A]\nVisual: x\n").scenes[-1].duration == 4.0  # no narration: the minimum
    assert parse("[0:00 – A]\nhi there\n").scenes[-1].duration == 4.0  # 1.8 s < minimum
    # 7 words → 2.8 s + 1 s = 3.8 s → rounded up to 4 s
    s = parse("[0:00 – A]\none two three four five six seven\n", min_last_scene_s=0)
    assert s.scenes[-1].duration == 4.0
    s = parse("[0:10 – A]\none two three four five\n", words_per_minute=60, min_last_scene_s=2)
    assert s.scenes[-1].duration == 6.0 and s.duration == 16.0


def test_script_duration_zero_without_scenes():
    assert parse("").duration == 0.0


# --------------------------------------------------------------------------- labels


def test_visual_inline_following_and_multiple():
    s = one_scene("Visual: A dark room.\nRain on the glass.\n\nVisual:\nA flicker.\n")
    assert s.scenes[0].visual == "A dark room. Rain on the glass. A flicker."
    assert s.scenes[0].narration == []


@pytest.mark.parametrize(
    "label, speaker, direction",
    [
        ("Narration:", None, None),
        ("NARRATION:", None, None),
        ("narration:", None, None),
        ("Narration (Winston):", "Winston", None),
        ("Narration (Dr. Élodie Varga):", "Dr. Élodie Varga", None),
        ("Audio:", None, None),
        ("Audio (Winston):", "Winston", None),
        ("Audio (Winston – distorted, low):", "Winston", "distorted, low"),
        ("Audio (Winston — distorted):", "Winston", "distorted"),
        ("AUDIO (Winston - low):", "Winston", "low"),
        ("Audio (KESTREL – relay AI, flat):", "KESTREL", "relay AI, flat"),
    ],
)
def test_narration_labels(label, speaker, direction):
    for body, line in ((f"{label}\n“Line one.”\n", 3), (f"{label} “Line one.”\n", 2)):
        s = one_scene(body)
        (n,) = s.scenes[0].narration
        assert (n.text, n.speaker, n.direction, n.line) == ("Line one.", speaker, direction, line)
        assert s.issues == []


def test_multi_line_narration_until_blank_line():
    s = one_scene("Audio (Winston – low): “First,\nsecond…\nthird.”\n\nAfter the gap.\n")
    lines = s.scenes[0].narration
    assert [n.text for n in lines] == ["First,", "second…", "third.", "After the gap."]
    assert [n.speaker for n in lines] == ["Winston", "Winston", "Winston", None]
    assert [n.line for n in lines] == [2, 3, 4, 6]
    assert s.scenes[0].narration_text == "First, second… third. After the gap."


def test_narration_keeps_smart_punctuation_and_strips_outer_quotes():
    s = one_scene("Narration:\n“We didn’t build gods… we built mirrors.”\n\"Plain quotes.\"\n")
    assert [n.text for n in s.scenes[0].narration] == ["We didn’t build gods… we built mirrors.", "Plain quotes."]


def test_quoted_and_unlabeled_prose_is_narration():
    s = one_scene("“A quoted line.”\nSome plain prose, with a comma: and a colon.\n")
    lines = s.scenes[0].narration
    assert [(n.text, n.speaker) for n in lines] == [
        ("A quoted line.", None),
        ("Some plain prose, with a comma: and a colon.", None),
    ]
    assert s.issues == []


def test_quoted_line_ends_a_visual_block():
    s = one_scene("Visual: A hall.\n“Who’s there?”\n")
    assert s.scenes[0].visual == "A hall."
    assert [n.text for n in s.scenes[0].narration] == ["Who’s there?"]


@pytest.mark.parametrize(
    "label",
    ["ON-SCREEN TEXT:", "ON-SCREEN:", "ON SCREEN:", "On-screen:", "On screen:", "on-screen text:", "INVITE TEXT:",
     "ERROR LOG TEXT:", "Invite Text:"],
)
def test_on_screen_labels_inline_and_block(label):
    s = one_scene(f"{label}\nCOME DOWN.\n$ ls\n")
    assert [(o.kind, o.text, o.line) for o in s.scenes[0].on_screen] == [("output", "COME DOWN.", 3), ("command", "ls", 4)]
    s = one_scene(f"{label} Anya flags it in a ticket.\n")
    assert [(o.kind, o.text) for o in s.scenes[0].on_screen] == [("output", "Anya flags it in a ticket.")]
    assert s.scenes[0].narration == [] and s.issues == []


def test_on_screen_line_kinds():
    s = one_scene(
        "ON-SCREEN TEXT:\n"
        "ACCESSING: INCIDENT LOG\n"
        "$ tail -f /var/log/descent.log\n"
        "> who is root now?\n"
        "# journal damaged\n"
        "  depth   → 912 m\n"
        "[12:03:44] ERROR loop detected\n"
        "key=\"0xC0FFEE\"; path=\\\\ops\\share\\ 100%\n"
    )
    got = [(o.kind, o.prompt, o.text) for o in s.scenes[0].on_screen]
    assert got == [
        ("output", "", "ACCESSING: INCIDENT LOG"),
        ("command", "$", "tail -f /var/log/descent.log"),
        ("command", ">", "who is root now?"),
        ("comment", "", "# journal damaged"),
        ("output", "", "  depth   → 912 m"),
        ("output", "", "[12:03:44] ERROR loop detected"),
        ("output", "", 'key="0xC0FFEE"; path=\\\\ops\\share\\ 100%'),
    ]
    assert len(s.scenes) == 1 and s.issues == []


def test_on_screen_block_ends_at_label_blank_line_or_header():
    s = parse(
        "[0:00 – A]\nON-SCREEN TEXT:\n$ one\nNarration:\n“Spoken.”\nON-SCREEN:\ntwo\n\nPlain prose.\n"
        "ON SCREEN:\nthree\n[0:10 – B]\nfour\n"
    )
    a, b = s.scenes
    assert [o.text for o in a.on_screen] == ["one", "two", "three"]
    assert [n.text for n in a.narration] == ["Spoken.", "Plain prose."]
    assert [n.text for n in b.narration] == ["four"] and b.on_screen == []


def test_bare_command_line_starts_on_screen_text():
    s = one_scene("Narration: “Hi.”\n\n$ whoami\nroot\n")
    assert [(o.kind, o.text) for o in s.scenes[0].on_screen] == [("command", "whoami"), ("output", "root")]
    assert [n.text for n in s.scenes[0].narration] == ["Hi."]


def test_end_line_stops_parsing():
    s = parse("[0:00 – A]\nNarration: hi\nEND LOG_0002\n[0:10 – B]\nMusic: nope\n")
    assert len(s.scenes) == 1 and s.issues == []
    assert parse("[0:00 – A]\nhi\nEND\ngarbage [1:xx – y]\n").issues == []


# --------------------------------------------------------------------------- issues


def assert_issue(script: Script, code: str, severity: str, line: int | None) -> Issue:
    matching = [i for i in script.issues if i.code == code]
    assert len(matching) == 1, script.issues
    issue = matching[0]
    assert (issue.severity, issue.line, issue.file) == (severity, line, script.path)
    prefix = f"{script.path}:{line}: " if line is not None else f"{script.path}: "
    assert issue.message.startswith(prefix)
    assert issue.hint
    return issue


@pytest.mark.parametrize("text", ["", "   \n\n\t\n", "\ufeff"])
def test_empty_script(text):
    s = parse(text)
    assert_issue(s, "empty_script", "error", None)
    assert s.scenes == [] and len(s.errors) == 1


def test_no_scenes():
    s = parse("\n\nSCRIPT: LOG_1 — X\nJust some prose.\nMore prose.\n")
    assert_issue(s, "no_scenes", "error", 3)
    assert codes(s) == [("no_scenes", 3)]  # no text_before_first_scene noise


@pytest.mark.parametrize("header", ["[1:7x – X]", "[1:75 – X]", "[1:5 – X]", "[1:60:00 – X]", "[7 – X]", "[0:1a]"])
def test_bad_timestamp(header):
    s = parse(f"[0:10 – A]\nhi\n{header}\nNarration: x\n")
    issue = assert_issue(s, "bad_timestamp", "error", 3)
    assert header[1:].split()[0].rstrip("]") in issue.message
    assert len(s.scenes) == 2 and s.scenes[1].narration[0].text == "x"  # lines stay with their own scene


def test_timestamp_backwards_message_and_line():
    text = "\n".join(["SCRIPT: X"] + ["[0:00 – A]", "hi", "", "[2:10 – B]", "hi", ""] + ["filler"] * 6 + ["[1:05 – C]", "hi"])
    s = parse_log(text, "descent.txt", options=OPTIONS)
    issue = assert_issue(s, "timestamp_backwards", "error", 14)
    assert issue.message == "descent.txt:14: timestamp 1:05 comes before the previous scene's 2:10"
    assert issue.hint == "Put scenes in time order or fix the timestamp."
    assert all(sc.duration >= 0 for sc in s.scenes)


def test_equal_timestamps_are_not_increasing():
    s = parse("[0:10 – A]\nhi\n[0:10 – B]\nhi\n")
    assert "is the same as" in assert_issue(s, "timestamp_backwards", "error", 3).message


def test_empty_scene_warning():
    s = parse("[0:00 – A]\n\n[0:10 – B]\nhi\n")
    issue = assert_issue(s, "empty_scene", "warning", 1)
    assert "A" in issue.message and s.errors == []


def test_unknown_label_warning_keeps_text_out_of_narration():
    s = one_scene("Narration: “Spoken.”\nMusic: ominous drone\nswells and fades\n\nSFX (distant): clang\n")
    issue = [i for i in s.issues if i.line == 3][0]
    assert issue.code == "unknown_label" and issue.severity == "warning"
    assert "Music" in issue.message and "ominous drone" in issue.message
    assert codes(s) == [("unknown_label", 3), ("unknown_label", 6)]
    assert [n.text for n in s.scenes[0].narration] == ["Spoken."]


def test_colons_mid_sentence_are_not_labels():
    s = one_scene("At 03:14 station time: silence.\n“Note: it listened.”\nthe log said: nothing\n")
    assert len(s.scenes[0].narration) == 3 and s.issues == []


def test_text_before_first_scene():
    s = parse("SCRIPT: X\nsubtitle\nstray line\n\nanother\n[0:00 – A]\nhi\n")
    assert codes(s) == [("text_before_first_scene", 3), ("text_before_first_scene", 5)]
    assert all(i.severity == "warning" for i in s.issues) and "stray line" in s.issues[0].message


def test_issues_are_sorted_by_line_and_errors_property():
    s = parse("stray\n[0:10 – A]\n\n[0:05 – B]\nhi\n")
    assert codes(s) == [("text_before_first_scene", 1), ("empty_scene", 2), ("timestamp_backwards", 4)]
    assert [i.code for i in s.errors] == ["timestamp_backwards"]


# --------------------------------------------------------------------------- files and encodings


def test_cp1252_crlf_file(tmp_path):
    text = "SCRIPT: LOG_0001 – Caf\u00e9\r\n\r\n[0:00 \u2013 Open]\r\nNarration (Ren\u00e9e):\r\n\u201cWe didn\u2019t\u2026\u201d\r\n"
    path = tmp_path / "cafe.txt"
    path.write_bytes(text.encode("cp1252"))
    assert b"\x93" in path.read_bytes()  # really cp1252 smart quotes, not UTF-8
    s = parse_file(path, options=OPTIONS)
    assert (s.title, s.path, s.issues) == ("Café", str(path), [])
    (n,) = s.scenes[0].narration
    assert (n.text, n.speaker, n.line) == ("We didn\u2019t\u2026", "Ren\u00e9e", 5)


def test_cp1252_undefined_bytes_do_not_fail(tmp_path):
    path = tmp_path / "odd.txt"
    path.write_bytes(b"[0:00 - A]\nNarration: caf\xe9 \x81\n")
    assert parse_file(path, options=OPTIONS).scenes[0].narration[0].text.startswith("café")


def test_utf8_bom_and_cr_only(tmp_path):
    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufeffSCRIPT: LOG_1 — Ω\n[0:00 – A]\nhi\n".encode("utf-8"))
    s = parse_file(bom, options=OPTIONS)
    assert (s.script_id, s.title, s.issues) == ("LOG_1", "Ω", [])
    cr = tmp_path / "cr.txt"
    cr.write_bytes("SCRIPT: X\r[0:00 – A]\rNarration:\r“one”\r[0:09 – B]\rtwo\r".encode("utf-8"))
    assert read_text(cr) == "SCRIPT: X\n[0:00 – A]\nNarration:\n“one”\n[0:09 – B]\ntwo\n"
    s = parse_file(cr, options=OPTIONS)
    assert [sc.line for sc in s.scenes] == [2, 5] and s.scenes[0].narration[0].text == "one"


def test_unreadable_file_is_an_issue_not_an_exception(tmp_path):
    for path in (tmp_path / "missing.txt", tmp_path):
        s = parse_file(path, options=OPTIONS)
        assert s.scenes == [] and [i.code for i in s.errors] == ["unreadable_file"]
        assert s.errors[0].message.startswith(f"{path}: ")


def test_a_fifo_is_refused_not_read(tmp_path):
    """Reading a FIFO would block until something writes to it."""
    fifo = tmp_path / "script.txt"
    os.mkfifo(fifo)
    s = parse_file(fifo, options=OPTIONS)
    assert [(i.code, i.message) for i in s.errors] == [
        ("unreadable_file", f"{fifo}: cannot read the script: it is not a regular file")]


# --------------------------------------------------------------------------- hostile input: linear, bounded

_PARSE_PATHOLOGICAL = """
import sys, time
from renderer.script import Options, parse_text

RUNS = (" ", "\\t", "#", ":", "[", "*", "A ", "1:")
CONTEXTS = ("{}", "A{}x", "**{}", "*x{}", "[0:00 – {}", "## {}", "**A{}**: hi", "Narration ({}:")
SHAPES = ("SCRIPT: X\\n[0:00 – A]\\n{}\\n", "SCRIPT: X\\n{}\\n[0:00 – A]\\nhi\\n",
          "# T\\n## S\\n{}\\n", "# T\\n{}\\n## S\\nhi\\n")
n = int(sys.argv[1])
texts = [shape.format(context.format(run * (n // len(run)))) for run in RUNS for context in CONTEXTS
         for shape in SHAPES]
options = Options("auto", 150.0, 4.0, 0, 0, 0, 0, 0, 0)  # no limits: the parsers themselves are measured
start = time.perf_counter()
for text in texts:
    parse_text(text, options=options)
print(time.perf_counter() - start)
"""


def _seconds_to_parse_lines_of(n: int) -> float:
    """Time to parse every pathological line ``n`` characters long, in a child process with a deadline (a
    quadratic regex takes minutes at these lengths, and a regex cannot be interrupted in-process)."""
    try:
        done = subprocess.run([sys.executable, "-c", _PARSE_PATHOLOGICAL, str(n)], capture_output=True, text=True,
                              timeout=60, check=True, cwd=Path(__file__).resolve().parent.parent)
    except subprocess.TimeoutExpired:
        pytest.fail(f"parsing lines of {n:,} characters took over a minute: a regex backtracks")
    return float(done.stdout)


def test_parsing_is_linear_in_the_length_of_a_line():
    """Lines made of long runs of spaces, tabs, '#', ':', '[', '*' … in every kind of line of both formats (a
    scene's body, the subtitle, headers, headings, speakers, labels): ten times the characters take about ten
    times as long, never a hundred (one line of 4,000 spaces once took a second, 200,000 tens of minutes)."""
    small = _seconds_to_parse_lines_of(20_000)
    large = _seconds_to_parse_lines_of(200_000)
    assert large < 20 * small, f"20,000 characters: {small:.3f} s; 200,000: {large:.3f} s"


def limited(**limits) -> Options:
    """OPTIONS with no limits but ``limits``."""
    return replace(OPTIONS, **{"max_size_mb": 0, "max_line_chars": 0, "max_scenes": 0, "max_scene_s": 0,
                               "max_duration_s": 0, **limits})


def test_the_default_limits_pass_a_long_production():
    """Two hours in 120 scenes of a minute each, 100 words of narration a scene: far from every limit."""
    scenes = "".join(f"[{i // 60}:{i % 60:02d}:00 – Scene {i}]\nVisual: a hall.\nNarration:\n{'word ' * 100}\n\n"
                     for i in range(120))
    s = parse(f"SCRIPT: X\n{scenes}")
    assert len(s.scenes) == 120 and s.errors == []


def test_a_scene_or_script_over_its_length_limit_is_an_error():
    s = parse_log("[0:00 – A]\nhi\n[10:00:00 – B]\nho\n", "t.txt", options=limited(max_scene_s=1800))
    assert codes(s) == [("scene_too_long", 1)]
    assert s.errors[0].message == "t.txt:1: scene 1 “A” lasts 10:00:00, over the limit of 30:00 (script.max_scene_s=1800)"
    assert "script.max_scene_s=" in s.errors[0].hint
    s = parse_log("[0:00 – A]\nhi\n[999:00:00 – B]\nho\n", "t.txt", options=limited(max_duration_s=14400))
    assert codes(s) == [("script_too_long", 3)] and "script.max_duration_s=" in s.errors[0].hint
    s = parse_markdown("# T\n## A [0:00]\nhi\n## B [5:00:00]\nho\n", "t.md", options=limited(max_scene_s=60))
    assert codes(s) == [("scene_too_long", 2)]


def test_too_many_scenes_is_one_error_at_the_first_scene_past_the_limit():
    text = "".join(f"[{i}:00 – S{i}]\nword\n" for i in range(1100))
    s = parse_log(text, "t.txt", options=limited(max_scenes=500))
    assert codes(s) == [("too_many_scenes", 1001)]
    assert "1,100 scenes, over the limit of 500 (script.max_scenes)" in s.errors[0].message
    assert "script.max_scenes=" in s.errors[0].hint
    assert parse_log(text, "t.txt", options=limited(max_scenes=1100)).errors == []


def test_a_line_over_the_limit_is_an_error_and_not_read():
    s = parse_log("[0:00 – A]\nhi\n" + " " * 200_000 + "x\nho\n", "t.txt", options=limited(max_line_chars=20_000))
    assert codes(s) == [("line_too_long", 3)] and [n.text for n in s.scenes[0].narration] == ["hi", "ho"]
    assert "200,001 characters, over the limit of 20,000 (script.max_line_chars)" in s.errors[0].message


def test_a_script_over_the_size_limit_is_not_read(tmp_path):
    path = tmp_path / "big.txt"
    path.write_text("[0:00 – A]\n" + "word " * 300_000)  # 1.5 MB
    s = parse_file(path, options=limited(max_size_mb=1))
    assert s.scenes == [] and codes(s) == [("script_too_large", None)]
    assert s.errors[0].message == f"{path}: the script is over the limit of 1 MB (script.max_size_mb); it is not read"
    assert "script.max_size_mb=" in s.errors[0].hint
    assert codes(parse_text(path.read_text(), "big.txt", options=limited(max_size_mb=1))) == [("script_too_large", None)]
    assert parse_file(path, options=limited(max_size_mb=2)).errors == []


def test_sample_scripts_parse_without_issues():
    paths = sorted(SCRIPTS_DIR.glob("*.txt")) + sorted(SCRIPTS_DIR.glob("*.md"))
    if not paths:
        pytest.skip("no sample scripts")
    for path in paths:
        s = parse_file(path, options=OPTIONS)
        assert s.issues == [], s.issues
        assert s.scenes and all(sc.duration > 0 for sc in s.scenes)
        assert s.format == ("markdown" if path.suffix == ".md" else "log")


def test_to_dict_is_plain_json():
    s = parse("SCRIPT: LOG_2 — T\n[0:00 – A | B]\nVisual: v\nON-SCREEN TEXT:\n$ ls\nNarration (W – low): “n”\n")
    data = json.loads(json.dumps(s.to_dict()))
    assert data["duration"] == s.duration == 4.0
    assert data["scenes"][0]["narration"][0] == {"text": "n", "speaker": "W", "direction": "low", "line": 6}
    assert data["scenes"][0]["on_screen"][0] == {"text": "ls", "kind": "command", "prompt": "$", "line": 5}
    assert data["format"] == "log" and data["issues"] == []


# --------------------------------------------------------------------------- properties

_ALPHABET = st.sampled_from(
    list("abcXYZ019 :[]|()$>#\"“”’…–—-\t\r\n\ufeff\u2028é深")
    + ["SCRIPT: ", "END", "[0:00 – ", "[1:7x – ", "[2:10] ", "Visual:", "Narration (W – d):", "ON-SCREEN TEXT:",
       "INVITE TEXT:", "Music:", "$ ", "> ", "# ", "\n\n", "[12:03:44]", "Audio:", "On screen:", "**Visual:**",
       "__Music__:", "[0:00–0:20] ", "[1:05 - 1:7x | ", "END LOG_1", "END OF TRANSMISSION"]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=300), st.lists(_ALPHABET, max_size=80).map("".join)))
def test_parse_never_raises(text):
    s = parse(text)
    assert isinstance(s, Script)
    assert all(i.code != "internal_error" for i in s.issues), s.issues
    assert all(i.severity in ("error", "warning") and i.message.startswith("t.txt") for i in s.issues)
    assert all(sc.duration >= 0 for sc in s.scenes)
    json.dumps(s.to_dict())


RICH = """\
SCRIPT: LOG_0002 — THE DESCENT
Recovered AI Incident Log

[0:00 – Cold Open | Terminal Boot-Up]
Visual: Terminal-style screen blinking to life.
Rain streaks the glass.
ON-SCREEN TEXT:
ACCESSING: INCIDENT LOG
$ tail -f /var/log/descent.log
> who is there?
# journal damaged
Audio (Winston – distorted, low):
“We didn’t build gods…
we built mirrors.”

[1:05] Anomaly Discovery
Narration: “The first red flag was a loop.”
On-screen: Anya flags it in a ticket.
“A quoted line on its own.”
Unlabeled prose that is spoken.

[1:30 – Invitation]
INVITE TEXT: COME DOWN.
Visual:
A glowing monitor.
Narration (MERIDIAN):
It said it was only passing it along.
END LOG_0002
"""


def test_round_trip_every_content_line_lands_in_exactly_one_field():
    s = parse_log(RICH, "descent.txt", options=OPTIONS)
    assert s.issues == []
    fields = model_fields(s)

    content = {  # each non-blank, non-label, non-header line (or inline label text) → its expected text
        "Recovered AI Incident Log": "Recovered AI Incident Log",
        "Terminal-style screen blinking to life.": "Terminal-style screen blinking to life.",
        "Rain streaks the glass.": "Rain streaks the glass.",
        "ACCESSING: INCIDENT LOG": "ACCESSING: INCIDENT LOG",
        "$ tail -f /var/log/descent.log": "tail -f /var/log/descent.log",
        "> who is there?": "who is there?",
        "# journal damaged": "# journal damaged",
        "“We didn’t build gods…": "We didn’t build gods…",
        "we built mirrors.”": "we built mirrors.",
        "“The first red flag was a loop.”": "The first red flag was a loop.",
        "Anya flags it in a ticket.": "Anya flags it in a ticket.",
        "“A quoted line on its own.”": "A quoted line on its own.",
        "Unlabeled prose that is spoken.": "Unlabeled prose that is spoken.",
        "COME DOWN.": "COME DOWN.",
        "A glowing monitor.": "A glowing monitor.",
        "It said it was only passing it along.": "It said it was only passing it along.",
    }
    for line in RICH.splitlines():
        assert any(line.endswith(key) for key in content) or not line.strip() or line.startswith(
            ("SCRIPT:", "[", "END", "Audio (", "Narration (", "ON-SCREEN TEXT:", "Visual:")
        ), f"test table misses {line!r}"
    for source, expected in content.items():
        holders = [f for f in fields if expected in f]
        assert len(holders) == 1, (source, holders)
    assert (s.script_id, s.title) == ("LOG_0002", "THE DESCENT")
    assert [(sc.title, sc.subtitle, sc.start, sc.duration) for sc in s.scenes] == [
        ("Cold Open", "Terminal Boot-Up", 0.0, 65.0),
        ("Anomaly Discovery", None, 65.0, 25.0),
        ("Invitation", None, 90.0, 5.0),  # 8 words: 3.2 s + 1 s, rounded up
    ]


# --------------------------------------------------------------------------- END lines and quotes


@pytest.mark.parametrize("end", ["END", "END LOG_0002", "  END LOG-7  ", "END OF LOG", "END SCRIPT", "END 42"])
def test_end_line_variants_stop_parsing(end):
    s = parse(f"[0:00 – A]\nhi\n{end}\nafter\n[0:10 – B]\n")
    assert len(s.scenes) == 1 and [n.text for n in s.scenes[0].narration] == ["hi"]


@pytest.mark.parametrize("text", ["END OF TRANSMISSION", "END OF LINE.", "ENDPOINT REACHED", "END: 0x00"])
def test_end_like_on_screen_text_is_kept(text):
    s = one_scene(f"ON-SCREEN TEXT:\n{text}\n$ exit\n")
    assert [o.text for o in s.scenes[0].on_screen] == [text, "exit"]


@pytest.mark.parametrize(
    "line, text",
    [
        ("“Hi,” she said.", "“Hi,” she said."),
        ("He whispered “run”", "He whispered “run”"),
        ("“The word was “abyss”.”", "“The word was “abyss”.”"),
        ('"Plain."', "Plain."),
        ("“Only the opening…", "Only the opening…"),
        ("only the closing.”", "only the closing."),
        ("“It’s ‘fine’.”", "It’s ‘fine’."),
    ],
)
def test_quotes_are_stripped_only_when_they_wrap_the_line(line, text):
    assert [n.text for n in one_scene(f"Narration:\n{line}\n").scenes[0].narration] == [text]


def test_an_empty_quotation_is_not_narration():
    s = one_scene("Narration:\n“”\nVisual: v\n")
    assert s.scenes[0].narration == [] and s.issues == []


# --------------------------------------------------------------------------- narration vs. time and limits

THIRTY_WORDS = " ".join(["word"] * 30)  # 12 s at 150 wpm


def test_narration_too_long_for_its_scene_names_the_numbers():
    s = parse(f"[0:00 – A]\nNarration:\n“{THIRTY_WORDS}”\n[0:10 – B]\nhi\n")
    issue = assert_issue(s, "narration_too_long", "warning", 3)
    assert issue.message == (
        "t.txt:3: scene 1 “A” has 30 words of narration, about 12.0 s at 150 words per minute, "
        "but the scene lasts 10 s; the narration will be cut"
    )
    assert "words_per_minute" in issue.hint and s.errors == []


def test_narration_too_long_depends_on_the_speaking_rate():
    text = f"[0:00 – A]\nNarration: {THIRTY_WORDS}\n[0:10 – B]\nhi\n"
    assert parse(text, words_per_minute=200).issues == []  # 9 s fits in 10 s
    assert "at 100 words per minute" in parse(text, words_per_minute=100).issues[0].message


def test_last_scene_is_long_enough_for_its_narration():
    s = parse(f"[0:00 – A]\nNarration: {THIRTY_WORDS} {THIRTY_WORDS}\n")
    assert s.issues == [] and s.scenes[0].duration == 25.0


def test_narration_over_the_provider_limit_warns_and_counts_requests():
    sentence = "Nine words in this sentence, give or take one. "  # 47 characters
    s = parse(f"[0:00 – A]\nVisual: v\nNarration:\n{sentence * 4}\n", char_limit=100)
    issue = assert_issue(s, "narration_over_limit", "warning", 4)
    assert "187 characters" in issue.message and "100-character limit" in issue.message
    assert "split into 2 requests" in issue.message and s.errors == []


def test_provider_limit_default_and_off_switch():
    limit = ElevenLabsVoiceConfig().char_limit  # OPTIONS' limit: the one voice that has one
    at_limit = "[0:00 – A]\nNarration: " + "x" * limit + "\n"
    over_limit = "[0:00 – A]\nNarration: " + "x" * (limit + 1) + "\n"
    assert parse(at_limit).issues == []
    message = assert_issue(parse(over_limit), "narration_over_limit", "warning", 2).message
    assert f"{limit + 1:,} characters" in message
    assert parse(over_limit, char_limit=0).issues == []


@pytest.mark.parametrize("setting, bad", [
    *(("words_per_minute", bad) for bad in (0, -5, float("nan"), float("inf"), None, "fast")),
    *(("min_last_scene_s", bad) for bad in (float("nan"), None, "long")),
    *(("char_limit", bad) for bad in (float("inf"), None, "many")),
    *((limit, bad) for limit in ("max_size_mb", "max_line_chars", "max_scenes", "max_scene_s", "max_duration_s")
      for bad in (-1, float("nan"), None, "lots")),
])
def test_unusable_options_are_refused_naming_the_setting(setting, bad):
    """No default to fall back on here: those live in the config schema, where the fix is."""
    with pytest.raises(ValueError, match=rf"^(script|voice)\.{setting}="):
        Options.of(**{**asdict(OPTIONS), setting: bad})


def test_options_of():
    limits = dict(max_size_mb="4", max_line_chars="2e4", max_scenes=500.0, max_scene_s="1800", max_duration_s=0)
    assert Options.of("log", "120", "2.5", "300.0", **limits) == Options("log", 120.0, 2.5, 4.0, 20000, 500, 1800.0,
                                                                         0.0, 300)
    assert Options.of("auto", 150, 4, -1, **limits).char_limit == 0  # no limit


def test_options_are_the_script_config_and_the_voice_limit_with_no_defaults_of_their_own():
    """renderer.script may not import the schema, so it holds no defaults to drift from it: Options' fields are
    ScriptConfig's and the voice's char_limit, and every caller passes them."""
    assert [f.name for f in fields(Options)] == [f.name for f in fields(ScriptConfig)] + ["char_limit"]
    assert all(f.default is MISSING and f.default_factory is MISSING for f in fields(Options))
    assert "char_limit" in {f.name for f in fields(ElevenLabsVoiceConfig)}
    for parse_function in (parse_file, parse_text, parse_log):
        assert all(p.default is inspect.Parameter.empty for name, p in inspect.signature(parse_function).parameters
                   .items() if name != "path"), parse_function


# --------------------------------------------------------------------------- split_text


@pytest.mark.parametrize(
    "text, limit, chunks",
    [
        ("One. Two. Three.", 9, ["One. Two.", "Three."]),
        ("Aaa bbb. Ccc ddd eee.", 15, ["Aaa bbb.", "Ccc ddd eee."]),  # not "Aaa bbb. Ccc": sentences first
        ("alpha beta gamma delta", 11, ["alpha beta", "gamma delta"]),
        ("abcdefghij", 4, ["abcd", "efgh", "ij"]),
        ("“Stop.” He ran! Why? Fine…  ok", 8, ["“Stop.”", "He ran!", "Why?", "Fine… ok"]),
        ("  spaced \n\t out  ", 100, ["spaced out"]),
        ("", 10, []),
        ("Short enough.", 5000, ["Short enough."]),
    ],
)
def test_split_text(text, limit, chunks):
    assert split_text(text, limit) == chunks


def test_split_text_rejects_a_limit_below_one():
    with pytest.raises(ValueError):
        split_text("x", 0)


_SPLIT_PIECES = st.sampled_from(list("ab .!?…”’)\n\t\u2028") + ["wordy", "Sentence. ", "“Quoted.” "])


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.lists(_SPLIT_PIECES, max_size=60).map("".join)),
       st.integers(min_value=1, max_value=40))
def test_split_text_never_exceeds_the_limit_and_loses_nothing(text, limit):
    chunks = split_text(text, limit)
    assert all(0 < len(chunk) <= limit and chunk == chunk.strip() for chunk in chunks)
    assert "".join(chunks).replace(" ", "") == "".join(text.split())
    if all(len(word) <= limit for word in text.split()):
        assert " ".join(chunks) == " ".join(text.split())  # no word was cut


# --------------------------------------------------------------------------- format detection and dispatch


@pytest.mark.parametrize(
    "text, fmt",
    [
        ("SCRIPT: X\n[0:00 – A]\nhi\n", "log"),
        ("[0:00 – A]\nhi\n", "log"),
        ("\n  [1:05] Title\nhi\n", "log"),
        ("SCRIPT: X\n# a comment\n## not a heading here\n", "log"),
        ("# Title\n## Scene 1: A\nhi\n", "markdown"),
        ("## Scene 1\nhi\n", "markdown"),
        ("# T\n## [0:30] Scene\n", "markdown"),
        ("\n# Title\n\nSome prose only.\n", "markdown"),
        ("just prose\n", "log"),
        ("", "log"),
    ],
)
def test_detect_format(text, fmt):
    assert detect_format(text) == fmt
    assert parse_text(text, "t.txt", options=OPTIONS).format == fmt


def test_format_option_forces_a_parser(tmp_path):
    markdown = "# T\n## Scene 1: A\n**W**: hi\n"
    forced = parse_text(markdown, "t.txt", options=replace(OPTIONS, format="log"))
    assert forced.format == "log" and [i.code for i in forced.errors] == ["no_scenes"]
    forced = parse_text("SCRIPT: X\n[0:00 – A]\nhi\n", "t.txt", options=replace(OPTIONS, format="markdown"))
    assert forced.format == "markdown" and [i.code for i in forced.errors] == ["no_scenes"]
    path = tmp_path / "screenplay.txt"
    path.write_text(markdown, encoding="utf-8")
    assert parse_file(path, options=OPTIONS).format == "markdown"
    assert parse_file(path, options=replace(OPTIONS, format=" MarkDown ")).scenes[0].narration[0].speaker == "W"


def test_unknown_format_is_an_error_issue():
    s = parse_text("[0:00 – A]\nhi\n", "t.txt", options=replace(OPTIONS, format="yaml"))
    issue = assert_issue(s, "unknown_format", "error", None)
    assert "“yaml”" in issue.message and s.scenes == []


def test_bytes_are_decoded_like_files():
    s = parse_text("[0:00 – A]\r\nNarration: caf\u00e9 \u201cok\u201d\r\n".encode("cp1252"), "t.txt", options=OPTIONS)
    assert s.scenes[0].narration[0].text == "caf\u00e9 \u201cok\u201d" and s.issues == []


# --------------------------------------------------------------------------- untidy real-world input


@pytest.mark.parametrize(
    "header, title, subtitle",
    [
        ("[1:05–1:30] Cold Open", "Cold Open", None),
        ("[1:05 - 1:30 | Cold Open]", "Cold Open", None),
        ("[1:05 – 1:30 – Cold Open | Boot]", "Cold Open", "Boot"),
        ("[1:05 – 1984 Revisited]", "1984 Revisited", None),
        ("[1:05 – 2:30pm Meeting]", "2:30pm Meeting", None),
    ],
)
def test_time_ranges_do_not_leak_into_titles(header, title, subtitle):
    s = parse(f"[0:00 – First]\nhi\n{header}\nho\n[2:00 – Last]\nhi\n")
    assert (s.scenes[1].start, s.scenes[1].title, s.scenes[1].subtitle) == (65.0, title, subtitle)
    assert s.scenes[1].duration == 55.0 and s.issues == []  # a scene still runs to the next timestamp


def test_the_last_scene_runs_to_the_end_of_its_range():
    assert parse("[0:00 – A]\nhi\n[0:10–0:40] B\nhi\n").scenes[-1].duration == 30.0
    assert parse("[0:00 – A]\nhi\n[0:10–0:05] B\nhi\n").scenes[-1].duration == 4.0  # a range ending early: estimated


@pytest.mark.parametrize(
    "label", ["**Visual:**", "**Visual**:", "__Visual:__", "**Narration (W – low):**", "**ON-SCREEN TEXT:**"]
)
def test_labels_pasted_in_bold_are_labels(label):
    s = one_scene(f"{label} Some text.\n")
    scene = s.scenes[0]
    got = scene.visual or [n.text for n in scene.narration] or [o.text for o in scene.on_screen]
    assert got in ("Some text.", ["Some text."]) and s.issues == []
    assert [(n.speaker, n.direction) for n in scene.narration] in ([], [("W", "low")])


def test_bold_text_that_is_not_a_label_stays_verbatim():
    s = one_scene("**Run.** Now.\nON-SCREEN TEXT:\n__init__: loaded\n")
    assert [n.text for n in s.scenes[0].narration] == ["**Run.** Now."]
    assert [o.text for o in s.scenes[0].on_screen] == ["__init__: loaded"]


def test_unknown_bold_label_is_reported_as_written():
    s = one_scene("hi\n**Music:** ominous\n")
    assert codes(s) == [("unknown_label", 3)] and "“**Music:** ominous”" in s.issues[0].message


def test_a_label_followed_by_a_blank_line_still_owns_the_next_lines():
    s = one_scene("Narration (Winston):\n\n“Spoken.”\n\nVisual:\n\nA hall.\nON-SCREEN TEXT:\n\n$ ls\n\nAfter.\n")
    scene = s.scenes[0]
    assert [(n.text, n.speaker) for n in scene.narration] == [("Spoken.", "Winston"), ("After.", None)]
    assert scene.visual == "A hall." and [o.text for o in scene.on_screen] == ["ls"]
