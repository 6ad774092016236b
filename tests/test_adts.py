"""AAC pieces joined by copying their packets (renderer/media/adts.py): real encodes by ffmpeg, decoded again
and compared with the samples they were made from, and with one encode of the whole."""

from __future__ import annotations

import io
import subprocess
import tracemalloc

import numpy as np
import pytest

from renderer.media import adts

RATE = 48000


def encode(samples: np.ndarray) -> bytes:
    return subprocess.run(["ffmpeg", "-v", "error", "-f", "f32le", "-ar", str(RATE), "-ac", "1", "-i", "-",
                           "-c:a", "aac", "-b:a", "128k", "-fflags", "+bitexact", "-f", "adts", "-"],
                          input=samples.astype(np.float32).tobytes(), capture_output=True, check=True).stdout


def decode(data: bytes) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-f", "aac", "-i", "-", "-f", "f32le", "-"], input=data,
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype=np.float32)


def joined(pieces: list[tuple[bytes, int, str]]) -> bytes:
    out = io.BytesIO()
    adts.join(pieces, out)
    return out.getvalue()


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Bursts of tones with pauses between, so every piece starts and stops sounding."""
    t = np.arange(int(seconds * RATE)) / RATE
    rng = np.random.default_rng(seed)
    envelope = (np.sin(2 * np.pi * 1.3 * t) > 0.2) * (0.3 + 0.2 * rng.random())
    return (envelope * np.sin(2 * np.pi * 440 * t) * np.sin(2 * np.pi * 3 * t)).astype(np.float32)


def snr_db(reference: np.ndarray, got: np.ndarray) -> float:
    return 10 * np.log10(np.sum(reference ** 2) / np.sum((reference - got) ** 2))


def test_pieces_with_silent_edges_join_as_one_encode_of_the_whole_would():
    """Three pieces, each encoded alone from whole frames with a silent first and last frame where they meet:
    joined, they decode to the whole's samples after one frame of delay, as well as one encode of the whole
    does, with nothing lost or added at the joins."""
    bounds = [0, 60 * adts.FRAME, 130 * adts.FRAME, 130 * adts.FRAME + RATE + 500]  # the last of no whole frames
    whole = speech_like(bounds[-1] / RATE)
    for cut in bounds[1:-1]:
        whole[cut - adts.FRAME:cut + adts.FRAME] = 0.0  # the silent frames on either side of each join
    pieces = [(encode(whole[a:b]), b - a, f"piece {n}") for n, (a, b) in enumerate(zip(bounds, bounds[1:]))]
    together = decode(joined(pieces))
    alone = decode(encode(whole))
    assert len(adts.packets(joined(pieces))) == len(adts.packets(encode(whole)))
    delay = adts.DELAY_FRAMES * adts.FRAME
    got, reference = together[delay:delay + whole.size], alone[delay:delay + whole.size]
    assert snr_db(whole, got) > 20 and snr_db(whole, got) == pytest.approx(snr_db(whole, reference), abs=1.0)
    for cut in bounds[1:-1]:  # around each join: no click, no gap, as close as the whole encode
        near = slice(cut - 2 * adts.FRAME, cut + 2 * adts.FRAME)
        assert np.abs(got[near] - whole[near]).max() <= np.abs(reference[near] - whole[near]).max() + 0.01


def test_a_piece_that_does_not_end_on_a_whole_frame_or_has_lost_packets_is_refused():
    data = encode(np.zeros(10 * adts.FRAME, dtype=np.float32))
    with pytest.raises(adts.AdtsError, match="not a whole number"):
        joined([(data, 10 * adts.FRAME - 7, "ragged"), (data, 10 * adts.FRAME, "next")])
    with pytest.raises(adts.AdtsError, match="AAC packets for"):
        joined([(b"".join(adts.packets(data)[:-2]), 10 * adts.FRAME, "short")])
    with pytest.raises(adts.AdtsError, match="no ADTS frame at byte 0"):
        adts.packets(b"RIFF....WAVE", "not aac")


def test_a_join_holds_two_pieces_at_a_time_whatever_the_track_s_length(tmp_path):
    """Pieces given lazily (each read when the join asks for it) are written as they come: joining sixty of them
    costs the memory of two, not of the track (a 10-minute script's soundtrack held ~12 MB at once)."""
    piece, source, count = encode(speech_like(100 * adts.FRAME / RATE)), tmp_path / "piece.aac", 60
    source.write_bytes(piece)
    pieces = ((source.read_bytes(), 100 * adts.FRAME, f"piece {n}") for n in range(count))
    with open(tmp_path / "track.aac", "wb") as out:
        tracemalloc.start()
        try:
            written = adts.join(pieces, out)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert written == count * adts.frames_for(100 * adts.FRAME) - (count - 1)
    assert len(adts.packets((tmp_path / "track.aac").read_bytes())) == written
    assert peak < 3 * len(piece) < count * len(piece) / 10


def test_a_piece_ending_in_silence_is_extended_by_its_silent_packet_and_one_ending_in_sound_is_not():
    """``extended``: a piece encoded from its first frames, ending in silent ones, decodes as the encode of all
    its samples; a piece still sounding at its end (its last packets differ) cannot be extended."""
    voiced = speech_like(20 * adts.FRAME / RATE)
    voiced[-3 * adts.FRAME:] = 0.0
    whole = np.concatenate([voiced, np.zeros(300 * adts.FRAME + 100, dtype=np.float32)])
    extended = adts.extended(encode(voiced), whole.size, "voiced")
    assert extended is not None and len(adts.packets(extended)) == adts.frames_for(whole.size)
    assert np.array_equal(decode(extended), decode(encode(whole)))
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(20 * adts.FRAME) / RATE)
    assert adts.extended(encode(tone), whole.size, "sounding") is None
