"""renderer.script.parsers.markdown: the Markdown screenplay format, through renderer.script."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from renderer.script import Issue, Script, parse_file, parse_markdown, parse_text
from tests.conftest import OPTIONS, model_fields


def parse(text: str, **options) -> Script:
    return parse_markdown(text, "t.md", options=replace(OPTIONS, **options))


def one_scene(body: str, **options) -> Script:
    """`body` as the content of a single scene (heading on line 1, body from line 2)."""
    return parse("## Scene 1: Only\n" + body, **options)


def codes(script: Script) -> list[tuple[str, int | None]]:
    return [(i.code, i.line) for i in script.issues]


def assert_issue(script: Script, code: str, severity: str, line: int | None) -> Issue:
    matching = [i for i in script.issues if i.code == code]
    assert len(matching) == 1, script.issues
    issue = matching[0]
    assert (issue.severity, issue.line, issue.file) == (severity, line, script.path)
    assert issue.message.startswith(f"{script.path}:{line}: " if line is not None else f"{script.path}: ")
    assert issue.hint
    return issue


# --------------------------------------------------------------------------- title and headings


def test_title_id_and_subtitle():
    s = parse("# LOG_0005 — First Contact\n\n*A transmission*\n\n## Scene 1: A\nhi\n")
    assert (s.script_id, s.title, s.subtitle, s.format) == ("LOG_0005", "First Contact", "A transmission", "markdown")
    assert s.issues == []
    s = parse("# The Array ##\nPlain subtitle\n## A\nhi\n")
    assert (s.script_id, s.title, s.subtitle) == (None, "The Array", "Plain subtitle")


def test_title_falls_back_to_file_stem():
    assert parse_markdown("## A\nhi\n", "stories/first_contact.md", options=OPTIONS).title == "first_contact"


@pytest.mark.parametrize(
    "heading, title, subtitle, start",
    [
        ("## Scene 2: The Reply", "The Reply", None, None),
        ("## Scene 2 – The Reply", "The Reply", None, None),
        ("## scene 12b. The Reply", "The Reply", None, None),
        ("## The Reply", "The Reply", None, None),
        ("## Scene 2", "Scene 2", None, None),
        ("## The Reply | Below the Ice", "The Reply", "Below the Ice", None),
        ("## Scene 2: The Reply [0:30]", "The Reply", None, 30.0),
        ("## [0:30] Scene 2: The Reply", "The Reply", None, 30.0),
        ("## Scene 2 [0:30] – The Reply", "The Reply", None, 30.0),
        ("## [0:30 – The Reply | Below]", "The Reply", "Below", 30.0),
        ("## [1:00:30] The Reply", "The Reply", None, 3630.0),
        ("## The Reply [Draft]", "The Reply [Draft]", None, None),
        ("##   Scenery: Hills  ##", "Scenery: Hills", None, None),
    ],
)
def test_scene_heading_forms(heading, title, subtitle, start):
    s = parse(f"# T\n## Scene 1: First\nhi\n{heading}\nho\n", max_scene_s=0)  # scene 1 may last an hour
    scene = s.scenes[1]
    assert (scene.title, scene.subtitle, scene.line, scene.index) == (title, subtitle, 4, 1)
    if start is not None:
        assert scene.start == start
    assert s.issues == []


def test_empty_heading_gets_a_numbered_title():
    assert [sc.title for sc in parse("##\nhi\n## \nho\n").scenes] == ["Scene 1", "Scene 2"]


def test_other_headings_are_reported_and_ignored():
    s = parse("# T\n## A\nhi\n### Notes\n# Act II\n#### deeper\nho\n")
    assert codes(s) == [("unknown_heading", 4), ("unknown_heading", 5), ("unknown_heading", 6)]
    assert all(i.severity == "warning" for i in s.issues) and "### Notes" in s.issues[0].message
    assert [n.text for n in s.scenes[0].narration] == ["hi", "ho"]


# --------------------------------------------------------------------------- scene content


def test_italic_lines_are_the_visual():
    s = one_scene("*A dark room.*\n_Rain on the glass._\nSpoken words.\n*A flicker.*\n")
    assert s.scenes[0].visual == "A dark room. Rain on the glass. A flicker."
    assert [n.text for n in s.scenes[0].narration] == ["Spoken words."]


def test_partly_italic_lines_are_narration():
    s = one_scene("I *never* said that.\n*Half italic* and not.\n")
    assert [n.text for n in s.scenes[0].narration] == ["I *never* said that.", "*Half italic* and not."]
    assert s.scenes[0].visual == ""


@pytest.mark.parametrize(
    "line, speaker, direction",
    [
        ("**Anya**: We’re not alone.", "Anya", None),
        ("**Anya:** We’re not alone.", "Anya", None),
        ("**Anya** (whispering): We’re not alone.", "Anya", "whispering"),
        ("**Anya (whispering)**: We’re not alone.", "Anya", "whispering"),
        ("**Anya (whispering):** We’re not alone.", "Anya", "whispering"),
        ("**Anya – whispering**: We’re not alone.", "Anya", "whispering"),
        ("**Dr. Mara Chen, PhD**: We’re not alone.", "Dr. Mara Chen, PhD", None),
        ("**ORACLE** (array AI, flat): “We’re not alone.”", "ORACLE", "array AI, flat"),
    ],
)
def test_speaker_lines(line, speaker, direction):
    s = one_scene(line + "\n")
    (n,) = s.scenes[0].narration
    assert (n.text, n.speaker, n.direction, n.line) == ("We’re not alone.", speaker, direction, 2)
    assert s.issues == []


def test_speaker_continues_to_a_blank_line_then_plain_prose_has_none():
    s = one_scene("**Anya**:\n“First,\nsecond…”\n\nAfter the gap.\n**Ben**: one\n*visual*\nplain\n")
    got = [(n.text, n.speaker, n.line) for n in s.scenes[0].narration]
    assert got == [("First,", "Anya", 3), ("second…", "Anya", 4), ("After the gap.", None, 6), ("one", "Ben", 7),
                   ("plain", None, 9)]


def test_fenced_code_blocks_are_on_screen_text():
    s = one_scene(
        "```bash\n"
        "$ tail -f /var/log/array.log\n"
        "> who is there?\n"
        "# journal damaged\n"
        "\n"
        "## not a heading\n"
        "  depth → 912 m\n"
        "*not a visual*\n"
        "**Not**: a speaker\n"
        "````\n"  # a longer fence closes it too
        "~~~\n"
        "key=\"0xC0FFEE\"; path=\\\\ops\\ 100% {x}\n"
        "~~~\n"
    )
    got = [(o.kind, o.prompt, o.text, o.line) for o in s.scenes[0].on_screen]
    assert got == [
        ("command", "$", "tail -f /var/log/array.log", 3),
        ("command", ">", "who is there?", 4),
        ("comment", "", "# journal damaged", 5),
        ("comment", "", "## not a heading", 7),
        ("output", "", "  depth → 912 m", 8),
        ("output", "", "*not a visual*", 9),
        ("output", "", "**Not**: a speaker", 10),
        ("output", "", 'key="0xC0FFEE"; path=\\\\ops\\ 100% {x}', 13),
    ]
    assert len(s.scenes) == 1 and s.scenes[0].narration == [] and s.issues == []


def test_prompt_lines_start_on_screen_text_up_to_a_blank_line():
    s = one_scene("$ trace --carrier\norigin → perimeter\n# a comment, not a heading\n\n> who?\n**Mara**: hi\n")
    got = [(o.kind, o.text) for o in s.scenes[0].on_screen]
    assert got == [("command", "trace --carrier"), ("output", "origin → perimeter"),
                   ("comment", "# a comment, not a heading"), ("command", "who?")]
    assert [(n.text, n.speaker) for n in s.scenes[0].narration] == [("hi", "Mara")]
    assert s.issues == []


def test_comments_and_rules_are_ignored():
    s = one_scene("<!-- a note -->\nhi\n<!--\n## Scene 9\nmore notes\n-->\n---\n***\nho\n")
    assert len(s.scenes) == 1 and [n.text for n in s.scenes[0].narration] == ["hi", "ho"]
    assert s.issues == []


def test_unclosed_code_block_warns_and_keeps_its_text():
    s = one_scene("hi\n```\n$ ls\n## Scene 2\n")
    issue = assert_issue(s, "unclosed_code_block", "warning", 3)
    assert "```" in issue.message and "```" in issue.hint
    assert [o.text for o in s.scenes[0].on_screen] == ["ls", "## Scene 2"]


def test_text_before_the_first_scene_is_reported():
    s = parse("# T\nsubtitle\nstray\n```\ncode\n```\n## A\nhi\n")
    assert codes(s) == [("text_before_first_scene", 3), ("text_before_first_scene", 5)]
    assert "## Scene 1: Title" in s.issues[0].hint


def test_a_speaker_line_is_not_a_subtitle():
    s = parse("# T\n**Anya**: hi\n## A\nho\n")
    assert s.subtitle is None and codes(s) == [("text_before_first_scene", 2)]


# --------------------------------------------------------------------------- timing

TWENTY_WORDS = " ".join(["word"] * 20)  # 8 s at 150 wpm → 9 s scene


def test_durations_are_estimated_from_narration_and_starts_are_cumulative():
    s = parse(f"## A\n**W**: {TWENTY_WORDS}\n## B\n*visual only*\n## C\n{TWENTY_WORDS} {TWENTY_WORDS}\n")
    assert [(sc.start, sc.duration) for sc in s.scenes] == [(0.0, 9.0), (9.0, 4.0), (13.0, 17.0)]
    assert s.duration == 30.0 and s.issues == []


def test_speaking_rate_and_minimum_scene_length():
    s = parse(f"## A\n{TWENTY_WORDS}\n## B\nhi\n", words_per_minute=60, min_last_scene_s=2)
    assert [(sc.start, sc.duration) for sc in s.scenes] == [(0.0, 21.0), (21.0, 2.0)]


def test_timestamps_set_starts_and_untimed_scenes_follow_the_previous_one():
    s = parse(f"## A [0:05]\n{TWENTY_WORDS}\n## B\nhi\n## C [1:00]\nhi\n")
    assert [(sc.start, sc.duration) for sc in s.scenes] == [(5.0, 9.0), (14.0, 46.0), (60.0, 4.0)]
    assert s.issues == []


def test_narration_too_long_for_a_timed_scene():
    s = parse(f"## A [0:00]\n{TWENTY_WORDS}\n## B [0:05]\nhi\n")
    issue = assert_issue(s, "narration_too_long", "warning", 2)
    assert "20 words" in issue.message and "8.0 s" in issue.message and "lasts 5 s" in issue.message


def test_bad_timestamp():
    s = parse("## A [0:00]\nhi\n## B [1:7x]\nho\n")
    issue = assert_issue(s, "bad_timestamp", "error", 3)
    assert "“1:7x”" in issue.message and "## Scene 2: Title [1:05]" in issue.hint
    assert s.scenes[1].start == 4.0  # placed after the previous scene, as if untimed


def test_timestamps_going_backwards():
    s = parse("## A [0:30]\nhi\n## B [0:10]\nho\n## C [0:10]\nho\n")
    assert codes(s) == [("narration_too_long", 2), ("timestamp_backwards", 3), ("narration_too_long", 4),
                        ("timestamp_backwards", 5)]  # scenes A and B are left with no time at all
    assert s.issues[1].message == "t.md:3: timestamp 0:10 comes before the previous scene's 0:30"
    assert s.issues[3].message == "t.md:5: timestamp 0:10 is the same as the previous scene's 0:10"
    assert all(sc.duration >= 0 for sc in s.scenes)


def test_timestamp_before_an_estimated_start():
    s = parse(f"## A\n{TWENTY_WORDS}\n## B\nhi\n## C [0:05]\nho\n")  # B starts at 0:09
    issue = assert_issue(s, "timestamp_backwards", "error", 5)
    assert "0:09 (estimated from its narration)" in issue.message


# --------------------------------------------------------------------------- errors and warnings


@pytest.mark.parametrize("text", ["", "\n  \n", "<!-- only a comment -->\n"])
def test_empty_script(text):
    s = parse(text)
    assert "# Title" in assert_issue(s, "empty_script", "error", None).hint
    assert codes(s) == [("empty_script", None)]


def test_no_scenes():
    s = parse("\n# Title\nsubtitle\nJust prose.\n")
    issue = assert_issue(s, "no_scenes", "error", 2)
    assert "## Scene 1" in issue.message and codes(s) == [("no_scenes", 2)]


def test_empty_scene():
    s = parse("## A\n\n## B\nhi\n")
    assert "“A”" in assert_issue(s, "empty_scene", "warning", 1).message


def test_narration_over_limit():
    s = one_scene("**W**: " + "Twelve chars. " * 20 + "\n", char_limit=100)
    assert "split into 3 requests" in assert_issue(s, "narration_over_limit", "warning", 2).message


# --------------------------------------------------------------------------- files


def test_cp1252_crlf_markdown_file(tmp_path):
    text = "# Caf\u00e9 Log\r\n\r\n## Scene 1: Open\r\n*Steam.*\r\n**Ren\u00e9e**: \u201cWe didn\u2019t\u2026\u201d\r\n"
    path = tmp_path / "cafe.md"
    path.write_bytes(text.encode("cp1252"))
    assert b"\x93" in path.read_bytes()
    s = parse_file(path, options=OPTIONS)
    assert (s.format, s.title, s.issues) == ("markdown", "Caf\u00e9 Log", [])
    (n,) = s.scenes[0].narration
    assert (n.text, n.speaker, n.line) == ("We didn\u2019t\u2026", "Ren\u00e9e", 5)
    assert s.scenes[0].visual == "Steam."


def test_to_dict_is_plain_json():
    s = parse("# T\n## A | B [0:02]\n*v*\n```\n$ ls\n```\n**W** (low): n\n")
    data = json.loads(json.dumps(s.to_dict()))
    assert data["format"] == "markdown" and data["duration"] == 6.0
    assert data["scenes"][0]["narration"][0] == {"text": "n", "speaker": "W", "direction": "low", "line": 7}
    assert data["scenes"][0]["on_screen"][0] == {"text": "ls", "kind": "command", "prompt": "$", "line": 5}


# --------------------------------------------------------------------------- properties

_PIECES = st.sampled_from(
    list("abcXYZ019 :[]|()$>#*_`~\"“”’…–—-\t\r\n\ufeff\u2028é深")
    + ["# ", "## ", "### ", "## Scene 1: ", "[0:00]", "[1:7x]", "[0:00 – ", "*italic*", "**W**: ", "**W:** ",
       "**W** (d): ", "```", "```py\n", "~~~", "<!--", "-->", "---", "$ ", "> ", "\n\n", "SCRIPT: "]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=300), st.lists(_PIECES, max_size=80).map("".join)),
       st.sampled_from(["markdown", "auto"]))
def test_parse_never_raises(text, fmt):
    s = parse_text(text, "t.md", options=replace(OPTIONS, format=fmt))
    assert isinstance(s, Script) and s.format in ("log", "markdown")
    assert all(i.code != "internal_error" for i in s.issues), s.issues
    assert all(i.severity in ("error", "warning") and i.message.startswith("t.md") for i in s.issues)
    assert all(sc.duration >= 0 and sc.start >= 0 for sc in s.scenes)
    json.dumps(s.to_dict())


# --------------------------------------------------------------------------- round trip

RICH = """\
# LOG_0005 — FIRST CONTACT
*Recovered AI Incident Log*

## Scene 1: Quiet Array | Ring 3
*A ring of radio dishes on a dark moon.*
*One dish turns.*
**Narrator**: For six years the array listened.
It heard only itself.

```
$ array status --ring 3
dishes online → 24/24
# nothing new since 2031
```

## [0:20] The Pattern
_A spectrogram scrolls upward._
**ORACLE** (array AI, flat): “Narrowband carrier.”

Plain prose that is spoken.

$ trace --carrier 1420.41MHz
origin → inside the perimeter

## Scene 3: Inside the Perimeter [0:40]
**Mara Chen:** Something is answering us.
> who placed this?
<!-- a note to self -->
---
"""


def test_round_trip_every_content_line_lands_in_exactly_one_field():
    s = parse_markdown(RICH, "first_contact.md", options=OPTIONS)
    assert s.issues == []
    fields = model_fields(s)

    content = {  # each line with content (markup stripped) → its expected text
        "# LOG_0005 — FIRST CONTACT": ["LOG_0005", "FIRST CONTACT"],
        "*Recovered AI Incident Log*": ["Recovered AI Incident Log"],
        "## Scene 1: Quiet Array | Ring 3": ["Quiet Array", "Ring 3"],
        "*A ring of radio dishes on a dark moon.*": ["A ring of radio dishes on a dark moon."],
        "*One dish turns.*": ["One dish turns."],
        "**Narrator**: For six years the array listened.": ["For six years the array listened."],
        "It heard only itself.": ["It heard only itself."],
        "$ array status --ring 3": ["array status --ring 3"],
        "dishes online → 24/24": ["dishes online → 24/24"],
        "# nothing new since 2031": ["# nothing new since 2031"],
        "## [0:20] The Pattern": ["The Pattern"],
        "_A spectrogram scrolls upward._": ["A spectrogram scrolls upward."],
        "**ORACLE** (array AI, flat): “Narrowband carrier.”": ["Narrowband carrier."],
        "Plain prose that is spoken.": ["Plain prose that is spoken."],
        "$ trace --carrier 1420.41MHz": ["trace --carrier 1420.41MHz"],
        "origin → inside the perimeter": ["origin → inside the perimeter"],
        "## Scene 3: Inside the Perimeter [0:40]": ["Inside the Perimeter"],
        "**Mara Chen:** Something is answering us.": ["Something is answering us."],
        "> who placed this?": ["who placed this?"],
    }
    structural = {"", "```", "<!-- a note to self -->", "---"}
    assert {line for line in RICH.splitlines() if line not in structural} == set(content), "test table out of date"
    for source, expected_texts in content.items():
        for expected in expected_texts:
            holders = [f for f in fields if expected in f]
            assert len(holders) == 1, (source, expected, holders)

    a, b, c = s.scenes
    assert (a.visual, b.visual, c.visual) == (
        "A ring of radio dishes on a dark moon. One dish turns.", "A spectrogram scrolls upward.", "")
    assert [(n.speaker, n.direction) for n in a.narration + b.narration + c.narration] == [
        ("Narrator", None), ("Narrator", None), ("ORACLE", "array AI, flat"), (None, None), ("Mara Chen", None)]
    assert [(sc.start, sc.duration) for sc in s.scenes] == [(0.0, 20.0), (20.0, 20.0), (40.0, 4.0)]


def test_time_ranges_in_headings():
    s = parse("## Scene 1 [0:00–0:20]\nhi\n## Scene 2: Last [0:20 - 0:45]\nho\n")
    assert [(sc.title, sc.start, sc.duration) for sc in s.scenes] == [("Scene 1", 0.0, 20.0), ("Last", 20.0, 25.0)]
    assert s.issues == []
