"""renderer.script: the LOG-format parser and its validation issues."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from renderer.script import Issue, Script, parse_file, parse_log, read_text

SCRIPTS_DIR = Path(__file__).resolve().parent.parent / "scripts"


def parse(text: str, **options) -> Script:
    return parse_log(text, "t.txt", **options)


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
    assert parse_log("[0:00 – A]\nhi\n", "scripts/descent.txt").title == "descent"
    s = parse_log("SCRIPT: LOG_0009\n[0:00 – A]\nhi\n", "x/handshake.txt")
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
    s = parse("[0:59 – A]\nhi\n[1:02:03 – B]\nhi\n[75:00 – C]\nhi\n")
    assert [sc.start for sc in s.scenes] == [59.0, 3723.0, 4500.0]
    assert [sc.index for sc in s.scenes] == [0, 1, 2]
    assert s.issues == []


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
    s = parse_log(text, "descent.txt")
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
    s = parse_file(path)
    assert (s.title, s.path, s.issues) == ("Café", str(path), [])
    (n,) = s.scenes[0].narration
    assert (n.text, n.speaker, n.line) == ("We didn\u2019t\u2026", "Ren\u00e9e", 5)


def test_cp1252_undefined_bytes_do_not_fail(tmp_path):
    path = tmp_path / "odd.txt"
    path.write_bytes(b"[0:00 - A]\nNarration: caf\xe9 \x81\n")
    assert parse_file(path).scenes[0].narration[0].text.startswith("café")


def test_utf8_bom_and_cr_only(tmp_path):
    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufeffSCRIPT: LOG_1 — Ω\n[0:00 – A]\nhi\n".encode("utf-8"))
    s = parse_file(bom)
    assert (s.script_id, s.title, s.issues) == ("LOG_1", "Ω", [])
    cr = tmp_path / "cr.txt"
    cr.write_bytes("SCRIPT: X\r[0:00 – A]\rNarration:\r“one”\r[0:09 – B]\rtwo\r".encode("utf-8"))
    assert read_text(cr) == "SCRIPT: X\n[0:00 – A]\nNarration:\n“one”\n[0:09 – B]\ntwo\n"
    s = parse_file(cr)
    assert [sc.line for sc in s.scenes] == [2, 5] and s.scenes[0].narration[0].text == "one"


def test_unreadable_file_is_an_issue_not_an_exception(tmp_path):
    for path in (tmp_path / "missing.txt", tmp_path):
        s = parse_file(path)
        assert s.scenes == [] and [i.code for i in s.errors] == ["unreadable_file"]
        assert s.errors[0].message.startswith(f"{path}: ")


def test_sample_scripts_parse_without_errors():
    paths = sorted(SCRIPTS_DIR.glob("*.txt"))
    if not paths:
        pytest.skip("no sample scripts")
    for path in paths:
        s = parse_file(path)
        assert s.errors == [], s.errors
        assert s.scenes and all(sc.duration > 0 for sc in s.scenes)


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
       "INVITE TEXT:", "Music:", "$ ", "> ", "# ", "\n\n", "[12:03:44]", "Audio:", "On screen:"]
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
    s = parse_log(RICH, "descent.txt")
    assert s.issues == []
    fields = [s.title, s.script_id, s.subtitle]
    for scene in s.scenes:
        fields += [scene.title, scene.subtitle, scene.visual]
        fields += [n.text for n in scene.narration] + [o.text for o in scene.on_screen]
    fields = [f for f in fields if f]

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
