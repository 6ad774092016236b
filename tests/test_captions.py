"""renderer.media.captions: cues timed inside each scene, split to broadcast length, written as SRT and WebVTT."""

from __future__ import annotations

import re

import pytest

from renderer.media.captions import MAX_CUE_CHARS, Cue, cues, sentence_pauses, srt, vtt

LONG = ("The first red flag was a loop that nobody could explain, a pattern repeating in the logs every night "
        "at three minutes past two, always in the same subsystem, always with the same checksum, and always "
        "gone by morning. We called it the ghost. Nobody laughed for long.")


def scenes():
    lines = [
        ["We didn't build gods.", "We built mirrors."],
        [LONG],
        [],  # a silent scene: no cues
        ["Short one. Another!", "And a question?"],
    ]
    spans = [
        {"start": 0.0, "duration": 4.0},
        {"start": 4.0, "duration": 12.0},
        {"start": 16.0, "duration": 3.0},
        {"start": 19.0, "duration": 5.0},
    ]
    voice = [2.5, 30.0, 0.0, 0.0]  # scene 2's voice is longer than the scene; scene 4 has no voice length
    return lines, spans, voice


def windows(items: list[Cue], spans) -> list[list[Cue]]:
    return [[c for c in items if span["start"] <= c.start < span["start"] + span["duration"]] for span in spans]


def test_cues_stay_inside_their_scene_window():
    lines, spans, voice = scenes()
    items = cues(lines, spans, voice)
    per_scene = windows(items, spans)
    assert sum(map(len, per_scene)) == len(items)
    for scene_cues, span in zip(per_scene, spans):
        for c in scene_cues:
            assert span["start"] - 1e-9 <= c.start < c.end <= span["start"] + span["duration"] + 1e-6
    assert per_scene[2] == []
    assert all(per_scene[i] for i in (0, 1, 3))


def test_cues_follow_the_voice_clip_when_it_is_shorter_than_the_scene():
    lines, spans, voice = scenes()
    first = windows(cues(lines, spans, voice), spans)[0]
    assert first[0].start == 0.0
    assert first[-1].end == pytest.approx(2.5, abs=1e-3)  # spread over the voice, not the whole scene


def test_cues_fill_the_scene_when_the_voice_is_longer_or_unknown():
    lines, spans, voice = scenes()
    per_scene = windows(cues(lines, spans, voice), spans)
    assert per_scene[1][-1].end == pytest.approx(16.0, abs=1e-3)  # voice 30 s cut at the scene end
    assert per_scene[3][-1].end == pytest.approx(24.0, abs=1e-3)  # no voice length: the whole scene


def test_cues_are_ordered_and_do_not_overlap():
    lines, spans, voice = scenes()
    items = cues(lines, spans, voice)
    assert len(items) > 5
    for a, b in zip(items, items[1:]):
        assert a.start < a.end <= b.start < b.end


def test_long_narration_is_split_into_cues_of_at_most_84_chars_without_losing_words():
    lines, spans, voice = scenes()
    second = windows(cues(lines, spans, voice), spans)[1]
    assert MAX_CUE_CHARS == 84
    assert len(second) >= 3
    assert all(len(c.text) <= 84 for c in second)
    assert " ".join(c.text for c in second).split() == LONG.split()


def test_cues_break_at_sentence_ends():
    items = cues([["Short one. Another! And a question? Yes."]], [{"start": 0.0, "duration": 8.0}], [0.0])
    assert [c.text for c in items] == ["Short one.", "Another!", "And a question?", "Yes."]


def test_cue_length_is_proportional_to_its_text():
    items = cues([["Hi. " + "A much longer sentence than the first."]], [{"start": 0.0, "duration": 10.0}], [0.0])
    short, long = items
    ratio = (long.end - long.start) / (short.end - short.start)
    assert ratio == pytest.approx(len(long.text) / len(short.text), rel=0.02)


# --------------------------------------------------------------------------- formats

ITEMS = [Cue(0.0, 1.5, "First line."), Cue(1.5, 62.042, "Second, with ünïcode — and a dash."),
         Cue(3661.001, 3662.999, "Past an hour.")]


def test_srt_format():
    assert srt(ITEMS) == (
        "1\n00:00:00,000 --> 00:00:01,500\nFirst line.\n\n"
        "2\n00:00:01,500 --> 00:01:02,042\nSecond, with ünïcode — and a dash.\n\n"
        "3\n01:01:01,001 --> 01:01:02,999\nPast an hour.\n\n"
    )


def test_vtt_format():
    text = vtt(ITEMS)
    assert text.startswith("WEBVTT\n\n")
    blocks = text[len("WEBVTT\n\n"):].split("\n\n")
    assert blocks[-1] == ""
    assert blocks[:-1] == [  # cues numbered as their identifiers
        "1\n00:00:00.000 --> 00:00:01.500\nFirst line.",
        "2\n00:00:01.500 --> 00:01:02.042\nSecond, with ünïcode — and a dash.",
        "3\n01:01:01.001 --> 01:01:02.999\nPast an hour.",
    ]


def test_srt_of_generated_cues_is_well_formed():
    lines, spans, voice = scenes()
    items = cues(lines, spans, voice)
    blocks = srt(items).split("\n\n")[:-1]
    assert len(blocks) == len(items)
    stamp = r"\d{2}:\d{2}:\d{2},\d{3}"
    for n, block in enumerate(blocks, 1):
        number, times, text = block.split("\n")
        assert number == str(n)
        assert re.fullmatch(f"{stamp} --> {stamp}", times)
        assert text


def test_empty_cue_list():
    assert srt([]) == ""
    assert vtt([]) == "WEBVTT\n\n"
    assert cues([[], []], [{"start": 0, "duration": 1}, {"start": 1, "duration": 1}], [0, 0]) == []


def test_vtt_escapes_markup_characters():
    text = vtt([Cue(0.0, 1.0, "Tom & Jerry <redacted> 3 > 2")])
    assert "Tom &amp; Jerry &lt;redacted&gt; 3 &gt; 2" in text


def test_subtitle_files_keep_braces_and_backslashes_as_written():
    number, times, text = srt([Cue(0.0, 1.0, r"say {hi} \N not a break")]).strip().split("\n")
    assert text == "say {hi} \\\u2060N not a break"  # a word joiner keeps libass-style readers from breaking
    assert vtt([Cue(0.0, 1.0, "{x}")]).strip().endswith("\n{x}")


def test_words_are_timed_by_the_voice_or_shared_out_by_length():
    spans = [{"start": 10.0, "duration": 8.0}]
    alignment = _alignment("Hello there.", 0.5, 0.1)
    (cue,) = cues([["Hello there."]], spans, [3.0], alignments=[alignment])
    assert cue.word_times() == [("Hello", 10.5, 11.0), ("there.", 11.1, 11.7)]
    (estimated,) = cues([["Hi longword."]], spans, [1.3])
    (w1, t0, t1), (w2, t2, t3) = estimated.word_times()
    assert (w1, w2) == ("Hi", "longword.") and t0 == 10.0 and t1 == t2 and t3 == pytest.approx(11.3)
    assert (t3 - t2) == pytest.approx(10 / 3 * (t1 - t0), rel=0.01)  # 10 characters to 3


def _alignment(text: str, start: float, per_char: float) -> dict:
    chars = list(text)
    return {"characters": chars,
            "character_start_times_seconds": [start + i * per_char for i in range(len(chars))],
            "character_end_times_seconds": [start + (i + 1) * per_char for i in range(len(chars))]}


def test_character_timing_from_the_voice_times_the_cues():
    spans = [{"start": 10.0, "duration": 8.0}]
    # the service's text lost the space between its two requests: the timing still lines up
    alignment = _alignment("Hello there.Second one.", 0.5, 0.1)
    (first, second) = cues([["Hello there. Second one."]], spans, [3.0], alignments=[alignment])
    assert (first.text, first.start, first.end) == ("Hello there.", 10.5, 11.7)
    assert (second.text, second.start, second.end) == ("Second one.", 11.7, 12.8)


def test_timing_that_does_not_spell_the_narration_is_ignored():
    spans = [{"start": 0.0, "duration": 4.0}]
    wrong = _alignment("Something else entirely.", 0.0, 0.1)
    assert cues([["Hello there."]], spans, [2.0], alignments=[wrong]) == cues([["Hello there."]], spans, [2.0])


# --------------------------------------------------------------------------- pauses between sentences (shot cuts)
def _spoken(text: str, per_char: float = 0.1, gap_after: dict[int, float] | None = None) -> dict:
    starts, ends, t = [], [], 0.0
    for n, ch in enumerate(text):
        starts.append(round(t, 3))
        t += per_char
        ends.append(round(t, 3))
        t += (gap_after or {}).get(n, 0.0)
    return {"characters": list(text), "character_start_times_seconds": starts, "character_end_times_seconds": ends}


def test_the_voice_pauses_midway_between_its_sentences():
    text = "Fog rolls in. Boats rest! Quiet"
    timing = _spoken(text, gap_after={12: 0.4})  # a breath after "in."
    assert sentence_pauses(timing) == (1.55, 2.95)  # "in." ends at 1.3, "Boats" starts at 1.8; "rest!" 2.9, 3.0
    assert sentence_pauses(_spoken("v1.2 is out")) == ()  # a full stop inside a word ends no sentence
    assert sentence_pauses(None) == ()


def test_a_scene_s_pauses_are_on_its_clock():
    from renderer.providers.base import AudioClip
    from renderer.stages.segment import _pauses

    clip = AudioClip(None, 3.0, alignment=_spoken("One. Two.", gap_after={3: 0.2}))
    assert _pauses(0.0)(clip) == (0.55,) and _pauses(2.0)(clip) == (2.55,)  # the first scene's narration starts late
    assert _pauses(0.0)(AudioClip(None, 3.0)) == ()  # a voice without timing: even cuts
