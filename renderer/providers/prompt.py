"""What a Visual line says, in words a provider can act on: its words, and the colour and mood it names."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable

STOPWORDS = frozenset("""a an and as at by for from in into of on onto or over the their this that to under up
with without its it is are be slowly very""".split())

# colour words and things that have a colour, as hues (0..1 around the colour wheel)
HUES = {
    "red": 0.0, "crimson": 0.97, "blood": 0.99, "rust": 0.03, "ember": 0.04, "fire": 0.05, "flame": 0.06,
    "sunset": 0.06, "orange": 0.07, "amber": 0.08, "gold": 0.12, "golden": 0.12, "yellow": 0.15, "lime": 0.25,
    "forest": 0.3, "green": 0.33, "phosphor": 0.33, "matrix": 0.33, "emerald": 0.4, "teal": 0.47, "turquoise": 0.48,
    "cyan": 0.5, "aqua": 0.5, "ice": 0.55, "ocean": 0.58, "sea": 0.58, "water": 0.58, "sky": 0.58, "blue": 0.62,
    "navy": 0.65, "indigo": 0.7, "violet": 0.76, "purple": 0.8, "magenta": 0.85, "neon": 0.85, "pink": 0.92,
    "rose": 0.95,
}
DARK = frozenset("black night dark midnight shadow void abyss deep gloom noir underground cave".split())
BRIGHT = frozenset("bright day dawn sunny white light glow glowing sunlit noon snow".split())
FAST = frozenset("pulse pulsing storm fire flame fast rapid chaos glitch explosion rush racing flicker "
                 "flickering lightning alarm siren spark".split())
SLOW = frozenset("calm still slow quiet fog mist drift drifting gentle serene sleep frozen silent".split())


def words_in(text: str) -> list[str]:
    """Lower-case words of ``text`` in order, without stop words; plurals folded ("waves" -> "wave")."""
    out = []
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        if word in STOPWORDS or len(word) < 2:
            continue
        if len(word) > 3 and word.endswith("ies"):
            word = word[:-3] + "y"
        elif len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        out.append(word)
    return out


def words_of(text: str) -> frozenset[str]:
    return frozenset(words_in(text))


def rarity(word_sets: Iterable[frozenset[str]]) -> dict[str, float]:
    """How much each word of a collection (a library, a page of search results) tells its items apart: the
    fewer items hold it, the more it counts (inverse document frequency)."""
    counts: dict[str, int] = {}
    total = 0
    for words in word_sets:
        total += 1
        for word in words:
            counts[word] = counts.get(word, 0) + 1
    return {word: math.log(1 + total / n) for word, n in counts.items()}


def match(wanted: frozenset[str], words: frozenset[str], idf: dict[str, float]) -> float:
    """How well an item's ``words`` answer the ``wanted`` ones: the rarity of every word they share."""
    return sum(idf.get(w, 0.0) for w in wanted & words)


@dataclass(frozen=True)
class Mood:
    """How a prompt steers a generated picture: a hue (None: any), how dark, how fast it moves."""

    hue: float | None = None
    value: tuple[float, float] = (0.25, 0.6)  # HSV value range of its colours
    speed: float = 1.0  # motion, relative to the source's own


def mood_of(prompt: str) -> Mood:
    """The first colour word sets the hue; dark/bright words the value; fast/slow words the motion."""
    words = words_in(prompt)
    hue = next((HUES[w] for w in words if w in HUES), None)
    dark, bright = DARK.intersection(words), BRIGHT.intersection(words)
    value = (0.08, 0.25) if dark and not bright else (0.5, 0.8) if bright and not dark else Mood.value
    fast, slow = FAST.intersection(words), SLOW.intersection(words)
    speed = 2.5 if fast and not slow else 0.4 if slow and not fast else 1.0
    return Mood(hue, value, speed)
