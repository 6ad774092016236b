"""The timeline plan: scene boundaries on the nearest frame, no drift, the lead, the last scene's length."""

from __future__ import annotations

import math

import pytest

from renderer.stages.timeline import (
    TAIL_S,
    Chunk,
    Span,
    Timeline,
    body,
    body_chunks,
    cut_window,
    plan,
    shot_bounds,
    shot_count,
    split,
)


def scenes_at(*starts: float, last: float = 4.0) -> list[tuple[float, float]]:
    """(start, duration) per scene: each runs to the next timestamp, the last for ``last`` seconds."""
    ends = [*starts[1:], starts[-1] + last]
    return [(a, b - a) for a, b in zip(starts, ends)]


def check_contiguous(timeline: Timeline) -> None:
    """Spans follow each other without gaps or overlaps, from frame 0, each at least one frame long."""
    assert timeline.spans[0].first_frame == 0
    for a, b in zip(timeline.spans, timeline.spans[1:]):
        assert b.first_frame == a.first_frame + a.frames
    assert all(s.frames >= 1 for s in timeline.spans)
    assert sum(s.frames for s in timeline.spans) == timeline.spans[-1].first_frame + timeline.spans[-1].frames


def test_each_scene_starts_on_the_frame_nearest_its_timestamp():
    fps = 24
    timeline = plan(scenes_at(0.0, 1.3, 2.71), fps)
    check_contiguous(timeline)
    assert [s.first_frame for s in timeline.spans] == [0, 31, 65]  # 1.3 * 24 = 31.2, 2.71 * 24 = 65.04
    for span, stamp in zip(timeline.spans, (0.0, 1.3, 2.71)):
        assert span.fps == fps
        assert abs(span.start - stamp) <= 0.5 / fps


def test_no_drift_over_a_hundred_scenes():
    fps, step = 24, 1.37  # 32.88 frames a scene: whole-frame durations per scene would drift 12 frames
    starts = [i * step for i in range(100)]
    timeline = plan(scenes_at(*starts, last=step), fps)
    check_contiguous(timeline)
    assert len(timeline.spans) == 100
    worst = max(abs(span.start - stamp) for span, stamp in zip(timeline.spans, starts))
    assert worst <= 0.5 / fps + 1e-9
    # the frames of the scenes add up to the end frame exactly: the video is as long as the last scene ends
    assert sum(s.frames for s in timeline.spans) == round(timeline.duration * fps)
    assert abs(timeline.duration - 100 * step) <= 1 / fps
    assert {s.frames for s in timeline.spans[:-1]} == {32, 33}  # each scene rounds its own way


@pytest.mark.parametrize("fps", [10, 24, 25, 30, 60])
def test_boundaries_are_rounded_not_truncated(fps):
    starts = [0.0, 0.96, 2.049, 3.5, 7.77]
    timeline = plan(scenes_at(*starts), fps)
    check_contiguous(timeline)
    for span, stamp in zip(timeline.spans, starts):
        assert abs(span.start - stamp) <= 0.5 / fps + 1e-9


def test_a_first_timestamp_after_zero_starts_the_video_on_the_first_scene_with_a_lead():
    timeline = plan(scenes_at(2.0, 5.0, 9.0), 10)
    check_contiguous(timeline)
    assert timeline.lead == 2.0
    assert timeline.spans[0].start == 0.0  # the video opens on the first scene, not on black
    assert timeline.spans[0].duration == 5.0  # ... which lasts until the second one's timestamp
    assert [s.start for s in timeline.spans[1:]] == [5.0, 9.0]
    assert plan(scenes_at(0.0, 5.0), 10).lead == 0.0


def test_the_last_scene_lasts_its_narration_plus_the_tail():
    fps = 10
    short_voice = plan(scenes_at(0.0, 3.0, last=4.0), fps, last_voice_s=1.0)
    assert short_voice.spans[-1].duration == 4.0  # the scripted duration wins when it is longer
    long_voice = plan(scenes_at(0.0, 3.0, last=4.0), fps, last_voice_s=6.02)
    last = long_voice.spans[-1]
    assert last.duration >= 6.02 + TAIL_S
    assert last.duration < 6.02 + TAIL_S + 1 / fps  # and no more than the frame it needs
    assert long_voice.spans[0] == short_voice.spans[0]  # the other scenes are unaffected
    assert long_voice.duration == last.end == pytest.approx(3.0 + last.duration)


def test_the_last_scene_ends_on_a_whole_frame_covering_its_scripted_duration():
    timeline = plan([(0.0, 2.0), (2.0, 3.33)], 24)
    last = timeline.spans[-1]
    assert last.first_frame == 48
    assert last.frames == math.ceil(3.33 * 24)  # 79.92 -> 80: never shorter than scripted
    assert last.duration >= 3.33


def test_a_single_scene_includes_its_lead():
    fps = 10
    timeline = plan([(2.0, 4.0)], fps, last_voice_s=5.0)  # narration starts 2 s in and lasts 5 s
    (span,) = timeline.spans
    assert span.first_frame == 0 and timeline.lead == 2.0
    assert span.duration >= 2.0 + 5.0 + TAIL_S
    assert span.duration < 2.0 + 5.0 + TAIL_S + 1 / fps
    quiet = plan([(2.0, 4.0)], fps, last_voice_s=0.5)
    assert quiet.spans[0].duration == 6.0  # the scripted end (2 + 4 s), counted from 0:00


def test_every_scene_gets_a_frame_even_when_timestamps_share_one():
    fps = 10
    timeline = plan(scenes_at(0.0, 1.01, 1.02, 1.04), fps)  # 10.1, 10.2, 10.4 frames: all round to 10
    check_contiguous(timeline)
    assert [s.frames for s in timeline.spans[:3]] == [10, 1, 1]
    assert timeline.spans[3].first_frame == 12
    same = plan([(0.0, 0.0), (0.0, 0.0)], fps)
    check_contiguous(same)
    assert [s.frames for s in same.spans] == [1, 1]


def test_a_zero_length_script_still_has_a_frame():
    timeline = plan([(0.0, 0.0)], 24)
    assert timeline.spans == (Span(0, 1, 24),)


def test_span_and_timeline_in_seconds():
    span = Span(first_frame=25, frames=50, fps=25)
    assert (span.start, span.duration, span.end) == (1.0, 2.0, 3.0)
    timeline = plan(scenes_at(0.0, 3.0, 7.0, last=4.0), 10)
    assert timeline.duration == 11.0
    assert timeline.to_list() == [{"start": 0.0, "duration": 3.0}, {"start": 3.0, "duration": 4.0},
                                  {"start": 7.0, "duration": 4.0}]


def test_plan_is_pure_data():
    a = plan(scenes_at(0.0, 1.3, 2.71), 24, last_voice_s=3.2)
    b = plan(scenes_at(0.0, 1.3, 2.71), 24, last_voice_s=3.2)
    assert a == b and hash(a) == hash(b)  # frozen dataclasses: a Part value the graph can key by


# --------------------------------------------------------------------------- shots within a scene
def test_a_scene_is_cut_into_shots_of_about_shot_s():
    assert [shot_count(d, 5.0) for d in (2.0, 7.4, 7.5, 45.0)] == [1, 1, 2, 9]
    assert shot_count(45.0, 0) == 1


def test_cuts_are_even_without_pauses_and_move_to_a_near_one():
    assert shot_bounds(100, 10, 4) == (0, 25, 50, 75, 100)
    assert shot_bounds(100, 10, 4, (2.2, 5.6, 9.0)) == (0, 22, 56, 75, 100)  # 9.0 is too far from 7.5
    assert shot_bounds(100, 10, 2, (0.4, 9.8)) == (0, 50, 100)  # pauses near the ends leave shots whole
    assert shot_bounds(3, 10, 5) == (0, 1, 2, 3)  # never more shots than frames


@pytest.mark.parametrize("frames,count", [(7, 3), (250, 9), (1000, 7), (61, 60)])
def test_shots_always_cover_the_scene_in_order(frames, count):
    pauses = tuple(t / 10 for t in range(0, frames, 3))
    for given in ((), pauses):
        bounds = shot_bounds(frames, 10, count, given)
        assert bounds[0] == 0 and bounds[-1] == frames and len(bounds) == min(count, frames) + 1
        assert all(a < b for a, b in zip(bounds, bounds[1:]))


# --- transitions: each cut's window and each scene's body -----------------------------------------------------
def tiles(timeline: Timeline, transition: int) -> list[tuple[int, int]]:
    """Every scene's body and every cut's window as (first frame, frames) on the video's timeline, in order."""
    out = []
    for i, span in enumerate(timeline.spans):
        first, end = body(timeline, i, transition)
        out.append((span.first_frame + first, end - first))
        if i + 1 < len(timeline.spans):
            window = cut_window(timeline, i, transition)
            out.append((timeline.spans[i + 1].first_frame - window.before, window.frames))
    return out


def test_a_cut_s_window_is_centred_on_it_the_odd_frame_after():
    timeline = plan(scenes_at(0.0, 2.0, 4.0), 25)
    window = cut_window(timeline, 0, 13)
    assert (window.before, window.after, window.frames) == (6, 7, 13)
    assert window.duration == pytest.approx(13 / 25)
    # the scene before the cut runs on through the window; the next one starts with it
    assert window.outgoing == Chunk(50 - 6, 13, 50, 25)
    assert window.incoming == Chunk(0, 7, 50, 25)
    assert body(timeline, 0, 13) == (0, 44)  # the first scene has no cut before it
    assert body(timeline, 1, 13) == (7, 44)
    assert body(timeline, 2, 13) == (7, 100)  # nor the last one after it: 4 s of its own


@pytest.mark.parametrize("fps, transition", [(25, 12), (24, 13), (30, 45), (10, 3), (25, 0), (25, 1)])
def test_bodies_and_windows_tile_the_timeline_exactly(fps, transition):
    """Every frame of the video is in exactly one body or window: the total and every scene start are as
    without transitions, and every scene keeps a frame of its own, however long the transition."""
    timeline = plan(scenes_at(0.0, 0.04, 0.12, 1.0, 3.3, last=0.5), fps)
    out = tiles(timeline, transition)
    assert out[0][0] == 0
    for (start, frames), (after, _) in zip(out, out[1:]):
        assert start + frames == after
    assert sum(frames for _, frames in out) == round(timeline.duration * fps)
    assert all(body(timeline, i, transition)[1] > body(timeline, i, transition)[0] for i in range(len(timeline.spans)))
    if transition == 0:
        assert all(cut_window(timeline, c, 0).frames == 0 for c in range(len(timeline.spans) - 1))


def test_short_scenes_cap_the_window_each_side_by_its_own_scene():
    timeline = plan(scenes_at(0.0, 0.08, 0.12, last=2.0), 25)  # 2, 1 and 50 frames
    assert [s.frames for s in timeline.spans] == [2, 1, 50]
    assert (cut_window(timeline, 0, 20).before, cut_window(timeline, 0, 20).after) == (0, 0)
    assert (cut_window(timeline, 1, 20).before, cut_window(timeline, 1, 20).after) == (0, 10)
    assert body(timeline, 1, 20) == (0, 1)
    # a side depends on its own scene only: a longer neighbour leaves it as it was
    longer = plan(scenes_at(0.0, 1.0, 1.04, last=2.0), 25)
    assert cut_window(longer, 1, 20).after == cut_window(timeline, 1, 20).after


def test_a_scene_s_body_is_split_on_its_own_clock_and_without_transitions_as_before():
    timeline = plan(scenes_at(0.0, 3.0, 7.0), 10)
    for i, span in enumerate(timeline.spans):
        assert body_chunks(timeline, i, 0, 3) == split(span, 3)
    chunks = body_chunks(timeline, 1, 6, 3)  # scene 1: 40 frames, 3 taken by each cut
    assert [c.offset for c in chunks] == [3, 14, 26] and sum(c.frames for c in chunks) == 34
    assert all(c.scene_frames == 40 for c in chunks)
    # a body with fewer frames than the chunks counted for it: empty chunks at its end, left out
    short = plan(scenes_at(0.0, 0.4, last=0.4), 10)  # 4 frames each
    assert [(c.offset, c.frames) for c in body_chunks(short, 0, 6, 4)] == [(0, 1), (1, 1), (2, 1), (3, 0)]
