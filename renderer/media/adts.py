"""AAC pieces encoded one by one, joined into one stream by copying their packets (ADTS frames).

An AAC encoder delays its output by one frame (``FRAME`` samples: the first packet decodes to silence), and
each packet's transform overlaps the next frame, so a piece's last packet finishes its last frame against
silence. Two pieces each made to begin and end with a silent frame join without a gap or a click: the first's
last packet is left out, and where it ended, the second's first packet (its delay, against its own silent
first frame) overlaps silence with silence. The joined stream keeps the first piece's delay, which whoever
plays it skips (``DELAY_FRAMES``).
"""

from __future__ import annotations

from typing import BinaryIO, Iterable

FRAME = 1024  # samples per AAC frame (AAC-LC)
DELAY_FRAMES = 1  # the encoder's priming, at the head of every piece and of the joined stream
HEADER = 7  # an ADTS header without a CRC


class AdtsError(ValueError):
    """A piece is not the ADTS stream the join expects."""


def packets(data: bytes, name: str = "stream") -> list[bytes]:
    """The ADTS frames of ``data``, each with its header, in order."""
    starts = _starts(data, name)
    return [data[a:b] for a, b in zip(starts, [*starts[1:], len(data)])]


def _starts(data: bytes, name: str) -> list[int]:
    """Where each ADTS frame of ``data`` begins; the frames fill it to its end."""
    out, at = [], 0
    while at < len(data):
        head = data[at:at + HEADER]
        if len(head) < HEADER or head[0] != 0xFF or head[1] & 0xF6 != 0xF0:
            raise AdtsError(f"{name}: no ADTS frame at byte {at}")
        length = ((head[3] & 0x03) << 11) | (head[4] << 3) | (head[5] >> 5)
        if length < HEADER or at + length > len(data):
            raise AdtsError(f"{name}: the ADTS frame at byte {at} runs past the end ({length} bytes)")
        out.append(at)
        at += length
    return out


def frames_for(samples: int) -> int:
    """The packets an encoder gives for ``samples``: its delay, then one per frame begun."""
    return DELAY_FRAMES + -(-samples // FRAME)


def extended(data: bytes, samples: int, name: str = "piece") -> bytes | None:
    """``data``, a piece encoded from the first whole frames of ``samples`` and ending in silent ones, as the piece
    of all ``samples``: its last packet repeated, for the silence an encoder gives for silence is one packet over
    and over (ffmpeg's AAC encoder: 13 bytes for 128 kb/s stereo). None when its last two packets differ: that
    encoder's silence is not one packet, and the whole piece must be encoded."""
    found = packets(data, name)
    more = frames_for(samples) - len(found)
    if more < 0 or len(found) < 2 or found[-1] != found[-2]:
        return None
    return data + found[-1] * more


def join(pieces: Iterable[tuple[bytes, int, str]], out: BinaryIO) -> int:
    """Write one stream of ``pieces`` (their ADTS bytes, the samples each was encoded from, a name for errors) to
    ``out``, each but the last without its last packet; the packets written. Each piece but the first must
    begin, and each but the last end, with a silent frame (its samples a whole number of frames). ``pieces`` is
    read as it is written: given lazily (each read when asked for), the join holds two pieces, not the track."""
    written, held = 0, None
    for piece in pieces:
        if held is not None:
            written += _copy(*held, out, last=False)
        held = piece
    if held is not None:
        written += _copy(*held, out, last=True)
    return written


def _copy(data: bytes, samples: int, name: str, out: BinaryIO, *, last: bool) -> int:
    """One piece of a join written to ``out`` (but its last packet, unless it is the ``last``): the packets written."""
    starts = _starts(data, name)
    if len(starts) != frames_for(samples):
        raise AdtsError(f"{name}: {len(starts)} AAC packets for {samples} samples, not {frames_for(samples)}")
    if last:
        out.write(data)
        return len(starts)
    if samples % FRAME:
        raise AdtsError(f"{name}: {samples} samples is not a whole number of {FRAME}-sample frames")
    out.write(memoryview(data)[:starts[-1]])
    return len(starts) - 1
