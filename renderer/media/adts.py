"""AAC pieces encoded one by one, joined into one stream by copying their packets (ADTS frames).

An AAC encoder delays its output by one frame (``FRAME`` samples: the first packet decodes to silence), and
each packet's transform overlaps the next frame, so a piece's last packet finishes its last frame against
silence. Two pieces each made to begin and end with a silent frame join without a gap or a click: the first's
last packet is left out, and where it ended, the second's first packet (its delay, against its own silent
first frame) overlaps silence with silence. The joined stream keeps the first piece's delay, which whoever
plays it skips (``DELAY_FRAMES``).
"""

from __future__ import annotations

FRAME = 1024  # samples per AAC frame (AAC-LC)
DELAY_FRAMES = 1  # the encoder's priming, at the head of every piece and of the joined stream
HEADER = 7  # an ADTS header without a CRC


class AdtsError(ValueError):
    """A piece is not the ADTS stream the join expects."""


def packets(data: bytes, name: str = "stream") -> list[bytes]:
    """The ADTS frames of ``data``, each with its header, in order."""
    out, at = [], 0
    while at < len(data):
        head = data[at:at + HEADER]
        if len(head) < HEADER or head[0] != 0xFF or head[1] & 0xF6 != 0xF0:
            raise AdtsError(f"{name}: no ADTS frame at byte {at}")
        length = ((head[3] & 0x03) << 11) | (head[4] << 3) | (head[5] >> 5)
        if length < HEADER or at + length > len(data):
            raise AdtsError(f"{name}: the ADTS frame at byte {at} runs past the end ({length} bytes)")
        out.append(data[at:at + length])
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


def join(pieces: list[tuple[bytes, int, str]]) -> bytes:
    """One stream of ``pieces`` (their ADTS bytes, the samples each was encoded from, a name for errors), each
    but the last without its last packet. Each piece but the first must begin, and each but the last end, with a
    silent frame (its samples a whole number of frames)."""
    out = []
    for n, (data, samples, name) in enumerate(pieces):
        found = packets(data, name)
        if len(found) != frames_for(samples):
            raise AdtsError(f"{name}: {len(found)} AAC packets for {samples} samples, not {frames_for(samples)}")
        if n < len(pieces) - 1:
            if samples % FRAME:
                raise AdtsError(f"{name}: {samples} samples is not a whole number of {FRAME}-sample frames")
            found = found[:-1]
        out += found
    return b"".join(out)
