"""Stock footage (Pexels, Pixabay) as scene visuals: per scene the clip that best matches its Visual line.

A script's scenes are planned together (``plan``), so no clip shows twice in one video: per scene a query of a few
keywords of its Visual line (stop words and camera talk dropped, words that name things before words that
describe them, the scene title as a hint; ``Visual: stock: harbour fog at night`` writes it by hand) is searched
in ``services`` order, fewer words when nothing is found. The candidates are ranked by the scene's words they
share (in tags, description or page slug; rare words count most, as in the library), then by a rendition that
covers the frame and a length that covers the scene; a still with a Ken Burns move fills in where no clip
matches (``photos``). Then each scene's clip is downloaded (the rendition nearest above the frame size, never
more than ``max_download_mb``), looped or held to last the scene, and credited (service, id, creator, page).
A service without a key is skipped (recorded); one that fails or whose rate limit is spent passes its scenes
to the next; a scene no service can fill fails over to ``then`` (e.g. library, procedural), recorded.
"""

from __future__ import annotations

import math
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from renderer.config import StockVisualConfig
from renderer.media import ffmpeg
from renderer.ops.ratelimit import RateBudget
from renderer.ops.reliability import Cancelled, RunState, ServiceError, ServiceGuard
from renderer.providers.base import SCENE_TIMEOUT_S, ProviderConfigError, VisualClip
from renderer.providers.fit import FITS, fit_clip, ken_burns
from renderer.providers.http import MissingAPIKey, api_key
from renderer.providers.prompt import HUES, match, rarity, words_in
from renderer.providers.stock_api import (
    KINDS,
    SERVICES,
    Candidate,
    Rendition,
    SearchCache,
    StockService,
    with_forms,
)

HAND_WRITTEN = re.compile(r"^\s*stock\s*:\s*(?P<query>.+)$", re.IGNORECASE | re.DOTALL)
# words of screenplay prose that say how a shot is taken, or little about what it shows
NOT_SUBJECTS = frozenset("""shot close closeup wide cutaway view camera scene frame footage clip pan push pull zoom
slow fast one two three single lone every another other some all each many few several half like toward towards
across through against along around behind beside between above below near far back front side inside outside
over under while where when then after before as once again still just only almost very faint dead empty last
first next new old small large big huge tiny long short high low full begin begins start starts show shows
up down out off away into onto upon within without toward
showing seen see look looking looks appear appears appearing become becomes itself themselves""".split())
DESCRIBING = ("ing", "ly", "ed")  # endings of words that describe rather than name
# common verbs and adjectives of Visual lines (after plural folding): they rank candidates but make poor queries
DOING = frozenset("""fall roll chop raise streak curl erupt reflect pas hum filter flicker glow drift spin crash rise
sink turn close open move wash cling bleed scroll spike climb seal wait stand sit walk run fly swim float hang
lean bend break burn rock chase shine fade blink pulse repeat sweep light strung cascade glitter glisten hover hide race
rush spill pour drip tick beat breathe watch stare face hold carry pull push lift drop throw catch swing shake
sway roar sing speak talk cry laugh smile frozen broken cracked lit dark bright grey gray black white red blue
green tall wet dry cold warm hot quiet loud busy calm soft hard thin thick deep shallow wide narrow heavy
silent lonely distant ancient modern golden pale wooden top bottom""".split())
TITLE_WEIGHT = 0.5  # a title word counts half a Visual word
STRONG = 1.0  # share of a query's keywords a candidate must show for the next service not to be asked
GOOD = 0.6  # ... and the share that ends a scene's searches of one service (with ENOUGH candidates)
ENOUGH = 4  # candidates a scene's searches stop at (fewer keywords are tried until then)
RELATED = 0.5  # a scene's later shot takes a clip scoring at least this share of its first clip's, else repeats


class NoStockMatch(RuntimeError):
    """No service had a fitting clip or still for the scene (the reasons, service by service, are said)."""


@dataclass(frozen=True)
class Want:
    """What a scene asks the services for: its query words (strongest first) and the words a match shares."""

    keywords: tuple[str, ...]  # in the order they are dropped from the end when a search finds nothing
    words: frozenset[str]  # every content word of the Visual line
    hints: frozenset[str]  # the scene title's
    duration: float
    written: bool = False  # the query was written by hand (``stock: ...``)

    def queries(self) -> list[str]:
        """All the keywords, then fewer (the weakest dropped), then each alone, strongest first."""
        shorter = [" ".join(self.keywords[:n]) for n in range(len(self.keywords), 1, -1)]
        return list(dict.fromkeys(shorter + list(self.keywords)))


def keyword_weight(word: str, position: int, hints: frozenset[str]) -> float:
    """How much a word of a Visual line says what the footage shows: names before descriptions and colours,
    words the title repeats first, earlier words before later ones (a tie-break)."""
    weight = 1.0
    if word in HUES:
        weight = 0.6
    elif word in DOING or (word.endswith(DESCRIBING) and len(word) > 4):
        weight = 0.5
    if word in hints:
        weight += 0.5
    return weight - position * 1e-3


def want_of(prompt: str, title: str = "", duration: float = 5.0,
            max_words: int = StockVisualConfig.query_words) -> Want:
    """A scene's query and words; its words also in their other forms (``stock_api.with_forms``)."""
    hand = HAND_WRITTEN.match(prompt or "")
    hints = frozenset(w for w in words_in(title or "") if w not in NOT_SUBJECTS)
    text = hand["query"] if hand else prompt or title or ""
    words = [w for w in dict.fromkeys(words_in(text)) if w not in NOT_SUBJECTS and not w.isdigit()]
    if hand:
        return Want(tuple(words), with_forms(words), frozenset(), duration, written=True)
    ranked = sorted(words, key=lambda w: -keyword_weight(w, words.index(w), hints))
    return Want(tuple(ranked[:max(1, max_words)]), with_forms(words), with_forms(hints) - with_forms(words), duration)


def coverage(candidate: Candidate, want: Want) -> float:
    """The share of the scene's query keywords a candidate shows."""
    return sum(1 for k in want.keywords if with_forms([k]) & candidate.words) / max(1, len(want.keywords))


def rendition_for(candidate: Candidate, width: int, height: int, max_bytes: int) -> Rendition | None:
    """The smallest rendition that covers the frame (scaled to cover it, it is not enlarged), else the largest
    one; never one the service says is over ``max_bytes``."""
    allowed = [r for r in candidate.renditions if not (r.size and r.size > max_bytes)]
    if not allowed:
        return None
    covering = [r for r in allowed if r.width >= width and r.height >= height]
    if covering:
        return min(covering, key=lambda r: r.width * r.height)
    return max(allowed, key=lambda r: r.width * r.height)


def score(candidate: Candidate, want: Want, idf: dict[str, float], rendition: Rendition, width: int,
          height: int) -> float:
    """Relevance (the scene's words it shares, rare words counting most; title words half), bettered by a
    rendition covering the frame and a length covering the scene; 0: not relevant at all."""
    relevance = match(want.words, candidate.words, idf) + TITLE_WEIGHT * match(want.hints, candidate.words, idf)
    if relevance <= 0:
        return 0.0
    covers = 1.0 if rendition.width >= width and rendition.height >= height else (
        min(rendition.width / width, rendition.height / height))
    lasts = 1.0 if candidate.kind == "photo" else min(1.0, candidate.duration / max(0.1, want.duration))
    return relevance * (1 + 0.2 * covers + 0.2 * lasts) - 1e-4 * candidate.rank


def best(candidates: list[Candidate], want: Want, used: set[tuple[str, str]], *, width: int, height: int,
         max_bytes: int) -> tuple[Candidate, Rendition, float] | None:
    """The best candidate not used yet in this video, with the rendition to download and its score."""
    idf = rarity(c.words for c in candidates)
    ranked = []
    for c in candidates:
        rendition = rendition_for(c, width, height, max_bytes)
        if (c.service, c.id) in used or rendition is None:
            continue
        value = score(c, want, idf, rendition, width, height)
        if value > 0:
            ranked.append((value, -c.rank, c, rendition))
    if not ranked:
        return None
    value, _, chosen, rendition = max(ranked, key=lambda r: (r[0], r[1]))
    return chosen, rendition, value


def pick_of(c: Candidate, rendition: Rendition, query: str) -> dict[str, Any]:
    """A scene's pick as plain data: what is downloaded, and whom to credit."""
    return {"service": c.service, "id": c.id, "kind": c.kind, "url": rendition.url, "width": rendition.width,
            "height": rendition.height, "rendition": rendition.name, "duration": c.duration, "text": c.text,
            "query": query, "creator": c.creator, "creator_url": c.creator_url, "page_url": c.page_url}


def _shots(picks: list[dict[str, Any]], count: int, shot_s: float) -> tuple[dict[str, Any], ...]:
    """A scene's ``count`` shots from its ``picks``, in turn when there are fewer: a clip shown again goes on
    from where it was (``start``, seconds into it), a still shown again moves another way (``move``)."""
    out = []
    for k in range(count):
        pick, again = picks[k % len(picks)], k // len(picks)
        if again and pick["kind"] == "photo":
            pick = {**pick, "move": again}
        elif again:
            pick = {**pick, "start": round(again * shot_s % max(0.1, float(pick.get("duration") or 0.1)), 2)}
        out.append(pick)
    return tuple(out)


def credit_of(pick: dict[str, Any]) -> dict[str, str]:
    return {key: str(pick.get(key, "")) for key in ("service", "id", "kind", "creator", "creator_url", "page_url")}


class StockVisual:
    """Scene visuals from stock footage services (see the module's docstring). Built from StockVisualConfig
    (renderer/config.py), where its settings' defaults live."""

    version = "1"
    # a scene's pick (service, id, rendition) is part of its key: the settings that only steer the choice
    # do not need to be, nor those about waiting and recovering
    UNKEYED = ("services", "pexels_url", "pixabay_url", "per_page", "query_words", "photos", "max_download_mb",
               "search_cache_h", "rate_wait_s", "rate_cooldown_s", "shot_s", "then", "library_dir", "fallback")

    def __init__(self, *, name: str, services: Sequence[str], pexels_url: str, pixabay_url: str, per_page: int,
                 query_words: int, photos: bool, max_download_mb: float, search_cache_h: float, rate_wait_s: float,
                 rate_cooldown_s: float, fit: str, zoom: float, fps: int, shot_s: float, then: Sequence[str],
                 library_dir: str, fallback: bool):
        services = list(services)
        unknown = [s for s in services if s not in SERVICES]
        if unknown or not services:
            raise ProviderConfigError(f"visual.services={services}: name one or more of {', '.join(SERVICES)}")
        if fit not in FITS:
            raise ProviderConfigError(f"visual.fit={fit!r}: use loop or extend")
        self.name = name
        self.query_words = int(query_words)
        self.photos = bool(photos)
        self.max_bytes = int(max_download_mb * 1e6)
        self.fit, self.zoom, self.fps = fit, float(zoom), int(fps)
        self.shot_s = float(shot_s)
        self.then = list(then)
        self.library_dir = library_dir
        self.fallback = fallback
        self.search_cache_h = float(search_cache_h)
        urls = {"pexels": pexels_url, "pixabay": pixabay_url}
        self.clients: dict[str, StockService] = {}
        self.skipped: list[tuple[str, str]] = []  # (service, why): no key
        for service in dict.fromkeys(services):
            kind = SERVICES[service]
            try:
                key = api_key(kind.env_var, kind.label)
            except MissingAPIKey as exc:
                self.skipped.append((service, str(exc)))
                continue
            self.clients[service] = kind(urls[service], key, per_page=per_page, rate_wait_s=rate_wait_s,
                                         rate_cooldown_s=rate_cooldown_s)
        if not self.clients:
            raise MissingAPIKey("; ".join(why for _, why in self.skipped))
        self._cancelled = threading.Event()

    def __repr__(self) -> str:
        return f"StockVisual(name={self.name!r}, services={list(self.clients)})"

    # --- wiring (renderer/providers/chain.py) --------------------------------------------------------------
    @property
    def services(self) -> tuple[str, ...]:
        return tuple(self.clients)

    def connect(self, guards: dict[str, ServiceGuard], *, state: RunState | Path | None, cache_dir: str | Path) -> None:
        """The run's guards, rate budgets (shared by its processes) and search cache (in ``cache_dir``)."""
        for service, client in self.clients.items():
            client.guard = guards.get(service)
            client.budget = RateBudget(service, state)
            client.cache = SearchCache(Path(cache_dir) / "stock-search", self.search_cache_h)

    @property
    def guards(self) -> dict[str, ServiceGuard]:
        return {s: c.active_guard() for s, c in self.clients.items()}

    def start_fallbacks(self) -> list[dict[str, str]]:
        """Services skipped at start (no key), for the record."""
        used = ", ".join(self.clients)
        return [{"node": "visual", "from": f"{self.name}:{service}", "to": f"{self.name}:{used}", "reason": why}
                for service, why in self.skipped]

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def stats(self) -> dict[str, Any]:
        return {service: client.stats() for service, client in self.clients.items()}

    # --- planning a script ----------------------------------------------------------------------------------
    def plan(self, scenes: list[dict[str, Any]], *, width: int, height: int, timeout: float = SCENE_TIMEOUT_S
             ) -> tuple[tuple[dict[str, Any], ...], ...]:
        """Per scene (``{prompt, title, duration, shots}`` each; one shot unless said) a pick per shot, no clip
        twice in the video; a scene without any gets ``{"error": why}`` (service by service) for each shot, and
        one with fewer fitting clips than shots shows them in turn. Services are asked in order, the next one
        only for the scenes the ones before could not fill with good matches (at least ``STRONG`` of the
        query's words; a later shot's about the same as the first, ``RELATED``), stills only for scenes with no
        clip; searches run side by side, within the services' limits; every scene's first shot is chosen, in
        script order, before any scene's second."""
        deadline = time.monotonic() + timeout
        wants = [want_of(s.get("prompt", ""), s.get("title", ""), float(s.get("duration") or 5.0),
                         self.query_words) for s in scenes]
        shots = [max(1, int(s.get("shots", 1))) for s in scenes]
        picks: list[list[dict[str, Any]]] = [[] for _ in scenes]
        notes: list[list[str]] = [[] for _ in scenes]
        used: set[tuple[str, str]] = set()
        firsts: dict[int, float] = {}  # per scene: its first clip's score
        for kind in KINDS if self.photos else KINDS[:1]:
            pools: dict[int, list[Candidate]] = {}
            queries: dict[int, str] = {}
            services = list(self.clients.items())
            for n, (service, client) in enumerate(services):
                last = n == len(services) - 1
                # a scene with no clip yet, or one short of its shots (more clips, not stills: a still is a
                # stand-in, and every service asked costs requests of its limit)
                todo = [i for i, p in enumerate(picks)
                        if (not p or (kind == KINDS[0] and len(p) < shots[i])) and wants[i].keywords]
                if not todo:
                    break
                found = self._search_all(client, kind, [wants[i] for i in todo], width, height, deadline)
                for i, (query, result) in zip(todo, found):
                    if isinstance(result, BaseException):
                        notes[i].append(f"{service} {kind}s: {result}")
                    elif not result:
                        notes[i].append(f"{service} {kind}s: nothing found for {query!r}")
                    else:
                        pools.setdefault(i, []).extend(result)
                        queries.setdefault(i, query)
                for shot in range(max(shots[i] for i in todo)):  # every scene's first shot before any second
                    for i in todo:  # in script order: an earlier scene has the first choice
                        if len(picks[i]) != shot or shot >= shots[i] or i not in pools:
                            continue
                        chosen = best(pools[i], wants[i], used, width=width, height=height, max_bytes=self.max_bytes)
                        if chosen is None:
                            continue
                        candidate, rendition, value = chosen
                        # a later shot: about the same thing as the first, or the scene's clips again
                        if (last or coverage(candidate, wants[i]) >= STRONG) and value >= RELATED * firsts.get(i, 0.0):
                            used.add((candidate.service, candidate.id))
                            picks[i].append(pick_of(candidate, rendition, queries[i]))
                            firsts.setdefault(i, value)
                for i in todo:
                    if not picks[i] and i in pools and last:
                        notes[i].append(f"{kind}s found for {queries[i]!r} do not fit (used, too large, or "
                                        "about something else)")
        return tuple(_shots(p, count, wants[i].duration) if p else
                     ({"error": "; ".join(notes[i]) or "the Visual line has no words to search for"},) * count
                     for i, (p, count) in enumerate(zip(picks, shots)))

    def _search_all(self, client: StockService, kind: str, wants: list[Want], width: int, height: int,
                    deadline: float) -> list[tuple[str, list[Candidate] | BaseException]]:
        """Each want's candidates from ``client``: its queries in turn (fewer words, then single keywords) until
        a good match or ``ENOUGH`` candidates are found."""
        def one(want: Want) -> tuple[str, list[Candidate] | BaseException]:
            queries, pool, seen = want.queries(), [], set()
            try:
                for query in queries:
                    self._stop_if_cancelled()
                    for c in client.search(kind, query, width=width, height=height, deadline=deadline):
                        if c.id not in seen:
                            seen.add(c.id)
                            pool.append(c)
                    if len(pool) >= ENOUGH or any(coverage(c, want) >= GOOD for c in pool):
                        break
                return queries[0], pool
            except (ServiceError, Cancelled) as exc:
                return queries[0], pool or exc
            except Exception as exc:  # e.g. an open breaker: the next service
                return queries[0], pool or RuntimeError(f"{type(exc).__name__}: {exc}")

        with ThreadPoolExecutor(max_workers=max(1, min(4, len(wants))), thread_name_prefix="stock") as pool:
            results = list(pool.map(one, wants))
        for _, result in results:
            if isinstance(result, Cancelled):
                raise result
        return results

    def _stop_if_cancelled(self) -> None:
        if self._cancelled.is_set():
            raise Cancelled(f"{self.name}: cancelled")

    # --- one scene ----------------------------------------------------------------------------------------
    def render(self, prompt: str, out: Path, *, width: int, height: int, duration: float,
               timeout: float = SCENE_TIMEOUT_S, pick: dict[str, Any] | None = None, title: str = "") -> VisualClip:
        """The scene's clip at ``out``: the planned ``pick`` (or one planned for this scene alone)."""
        started = time.monotonic()
        if pick is None:
            pick = self.plan([{"prompt": prompt, "title": title, "duration": duration}], width=width, height=height,
                             timeout=timeout)[0][0]
        if "error" in pick:
            raise NoStockMatch(pick["error"])
        deadline = started + timeout
        client = self.clients.get(pick["service"])
        if client is None:
            raise NoStockMatch(f"{pick['service']} is not in use (no key)")
        still = pick["kind"] == "photo"
        raw = out.with_name(f"{out.stem}.{pick['service']}{'.jpg' if still else '.mp4'}")
        try:
            self._stop_if_cancelled()
            client.download(pick["url"], raw, deadline=deadline, max_bytes=self.max_bytes,
                            cancelled=self._cancelled.is_set)
            self._stop_if_cancelled()
            left = max(10.0, deadline - time.monotonic())
            if still:
                move = f"{prompt}#{pick['move']}" if pick.get("move") else prompt
                ken_burns(raw, out, move, width=width, height=height, duration=duration, zoom=self.zoom,
                          fps=self.fps, timeout=left)
            else:
                _check_video(client.service, raw)
                fit_clip(raw, out, duration, fit=self.fit, timeout=left, size=(width, height),
                         start=float(pick.get("start", 0.0)))
        finally:
            raw.unlink(missing_ok=True)
        return VisualClip(out, duration, provider=f"{self.name}:{pick['service']}:{pick['id']}",
                          credits=(credit_of(pick),))


def _check_video(service: str, path: Path) -> None:
    try:
        info = ffmpeg.probe(path, timeout=30)
    except ffmpeg.FFmpegError:
        info = None
    if info is None or info.first("video") is None or not math.isfinite(info.duration or 0):
        raise ServiceError(service, None, "malformed_video", "the download is not a video", True)


# --- credits ---------------------------------------------------------------------------------------------------
SITES = {"pexels": ("Pexels", "https://www.pexels.com"), "pixabay": ("Pixabay", "https://pixabay.com")}


def credits_text(credits: list[dict[str, Any]], title: str = "") -> str:
    """Credits ready to paste into a video description: one line per clip, in scene order, then the services."""
    lines = [f"Footage in {title}:" if title else "Footage:"]
    for c in credits:
        site = SITES.get(c.get("service", ""), (c.get("service", ""), ""))[0]
        what = "Photo" if c.get("kind") == "photo" else "Video"
        scene = f"Scene {c['scene'] + 1}: " if "scene" in c else ""
        by = f" by {c['creator']}" if c.get("creator") else ""
        lines.append(f"{scene}{what}{by} on {site}: {c.get('page_url', '')}".rstrip(": "))
    used = [SITES[s] for s in dict.fromkeys(c.get("service", "") for c in credits) if s in SITES]
    if used:
        lines += ["", "Videos and photos provided by " + " and ".join(f"{n} ({url})" for n, url in used) + "."]
    return "\n".join(lines) + "\n"
