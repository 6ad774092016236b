"""Pexels and Pixabay searches over their HTTP APIs: what they answer, as candidates of one shape.

Pexels (https://www.pexels.com/api/documentation/): ``GET /videos/search`` and ``GET /v1/search`` (photos) with
``Authorization: <PEXELS_API_KEY>``; query, per_page, orientation (landscape | portrait | square), size (small:
HD, medium: Full HD, large: 4K); a video's renditions are its ``video_files`` (hls entries have no size and are
skipped); its words are those of its page URL's slug. Rate limit: ``X-Ratelimit-Remaining`` and
``X-Ratelimit-Reset`` (a UNIX time) on 2xx answers only.
Pixabay (https://pixabay.com/api/docs/): ``GET /api/videos/`` and ``GET /api/`` (images) with the ``key``
query parameter; q (at most 100 characters), per_page (3..200), min_width, min_height; renditions large /
medium / small / tiny (``large`` may be empty); words from ``tags``. ``X-RateLimit-Remaining`` and
``X-RateLimit-Reset`` (seconds from now); searches must be cached for 24 hours.

Every search goes through the service's guard (breaker, retries, the run's API slots) and its ``RateBudget``
(the rate-limit headers, shared by the run's processes), and is kept in a ``SearchCache`` as plain JSON, keyed by
service, endpoint and parameters (never the key).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from renderer.ops.ratelimit import RateBudget, RateLimited, Reading, reading
from renderer.ops.reliability import ServiceError, ServiceGuard
from renderer.providers.http import Client, Guarded, error_from_response, json_body
from renderer.providers.prompt import words_in

KINDS = ("video", "photo")


@dataclass(frozen=True)
class Rendition:
    width: int
    height: int
    url: str
    size: int = 0  # bytes, when the service says (Pixabay); 0: unknown
    name: str = ""  # the service's name for it (hd, sd, large, medium ...)


@dataclass(frozen=True)
class Candidate:
    """One search result: what it shows (its words), its renditions and whom to credit."""

    service: str
    id: str
    kind: str  # video | photo
    words: frozenset[str]
    text: str  # where the words come from (tags, description, page slug)
    duration: float  # seconds; 0 for a photo
    renditions: tuple[Rendition, ...]
    creator: str
    creator_url: str
    page_url: str
    rank: int  # its place in the service's answer


def forms(word: str) -> set[str]:
    """A word and the stems a tag may use for it: "snowy" -> snow, "chopping" -> chop, "smoking" -> smoke."""
    out = {word}
    for ending in ("ing", "ed", "y"):
        if word.endswith(ending) and len(word) > len(ending) + 2 and not (ending == "y" and word[-2] in "aeiou"):
            base = word[: -len(ending)]
            out |= {base, base + "e"}
            if base[-1] == base[-2]:
                out.add(base[:-1])
    return out


def with_forms(words: Any) -> frozenset[str]:
    return frozenset(form for word in words for form in forms(word))


def words_of(text: str) -> frozenset[str]:
    """A candidate's words (as the library reads file names), in every form."""
    return with_forms(words_in(text))


def slug_text(page_url: str) -> str:
    """The words of a page URL's last segment, without its numeric id: ".../video/video-of-forest-1448735/"
    -> "video of forest"."""
    last = [p for p in urlsplit(page_url).path.split("/") if p][-1:] or [""]
    return " ".join(w for w in re.split(r"[-_]", last[0]) if w and not w.isdigit() and not w.startswith("id"))


def orientation_of(width: int, height: int) -> str:
    ratio = width / max(1, height)
    return "landscape" if ratio > 1.1 else "portrait" if ratio < 1 / 1.1 else "square"


def fit_within(width: int, height: int, box_w: int, box_h: int) -> tuple[int, int]:
    scale = min(1.0, box_w / max(1, width), box_h / max(1, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


class SearchCache:
    """Answers to searches as JSON files under ``root`` (``<cache.dir>/stock-search``), reused for ``hours``."""

    def __init__(self, root: Path | str | None, hours: float):
        self.root = Path(root) if root else None
        self.seconds = float(hours) * 3600

    def _path(self, service: str, request: dict[str, Any]) -> Path:
        assert self.root is not None
        key = hashlib.sha256(json.dumps({"service": service, **request}, sort_keys=True).encode()).hexdigest()
        return self.root / service / key[:2] / f"{key}.json"

    def get(self, service: str, request: dict[str, Any]) -> Any | None:
        if self.root is None or self.seconds <= 0:
            return None
        path = self._path(service, request)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or time.time() - float(entry.get("stored", 0)) > self.seconds:
            path.unlink(missing_ok=True)
            return None
        return entry.get("body")

    def put(self, service: str, request: dict[str, Any], body: Any) -> None:
        if self.root is None or self.seconds <= 0:
            return
        path = self._path(service, request)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps({"stored": time.time(), "service": service, "request": request,
                                       "body": body}), encoding="utf-8")
            os.replace(tmp, path)
        except OSError:  # a full or read-only cache costs requests, not the render
            pass


class StockService(Guarded):
    """What the two services share: a guarded, rate-kept, cached GET of a search."""

    service = ""
    env_var = ""
    label = ""
    reset_is_epoch = False  # X-RateLimit-Reset: a UNIX time (Pexels) or seconds from now (Pixabay)
    paths = {"video": "", "photo": ""}

    def __init__(self, base_url: str, key: str, *, per_page: int, rate_wait_s: float, rate_cooldown_s: float):
        self.per_page = int(per_page)
        self.rate_wait_s = float(rate_wait_s)
        self.rate_cooldown_s = float(rate_cooldown_s)
        self.client = Client(self.service, base_url, self.auth_headers(key))
        self._key = key
        self.guard: ServiceGuard | None = None  # set by the pipeline; see Guarded
        self._default_guard: ServiceGuard | None = None
        self._lock = threading.Lock()
        self.budget = RateBudget(self.service)
        self.cache = SearchCache(None, 0)
        self.searches = {"requests": 0, "cached": 0}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.client.base_url!r})"

    def auth_headers(self, key: str) -> dict[str, str]:
        return {}

    def params(self, kind: str, query: str, width: int, height: int) -> dict[str, Any]:
        raise NotImplementedError

    def secret_params(self) -> dict[str, str]:
        return {}

    def parse(self, kind: str, body: Any) -> list[Candidate]:
        raise NotImplementedError

    # --- a search ----------------------------------------------------------------------------------------
    def search(self, kind: str, query: str, *, width: int, height: int, deadline: float) -> list[Candidate]:
        """The candidates the service finds for ``query`` (its own order), from the cache when it has them."""
        path, params = self.paths[kind], self.params(kind, query, width, height)
        request = {"path": path, "params": params}
        body = self.cache.get(self.service, request)
        if body is None:
            body = self.active_guard().call(lambda: self._get(path, params, deadline), operation=f"search {kind}s",
                                            deadline=deadline)
            self.cache.put(self.service, request, body)
            with self._lock:
                self.searches["requests"] += 1
        else:
            with self._lock:
                self.searches["cached"] += 1
        try:
            return self.parse(kind, body)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ServiceError(self.service, None, "malformed_response", f"the search answer cannot be read "
                               f"({type(exc).__name__}: {exc})", False) from None

    def _get(self, path: str, params: dict[str, Any], deadline: float) -> Any:
        """One GET within the rate budget; its answer's rate-limit headers update the budget."""
        self.budget.acquire(max_wait_s=self.rate_wait_s, deadline=deadline)
        seen: Reading | None = None
        try:
            resp = self.client.request("GET", path, params={**params, **self.secret_params()}, check=False,
                                       timeout=self.active_guard().request_timeout(deadline))
            seen = reading(resp.headers, reset_is_epoch=self.reset_is_epoch)
        except BaseException:
            self.budget.release(None)
            raise
        if resp.status_code == 429:
            self.budget.release(seen, spent_for_s=self.rate_cooldown_s)
            raise self._too_many(resp, seen)
        self.budget.release(seen)
        if resp.status_code >= 400:
            raise error_from_response(self.service, resp)
        return json_body(self.service, resp)

    def _too_many(self, resp: Any, seen: Reading) -> ServiceError:
        """A 429: retried after the window's reset when that is near, else the next service is asked."""
        reset_in = (seen.reset_at - time.time()) if seen.reset_at is not None else self.rate_cooldown_s
        if reset_in > self.rate_wait_s:
            return RateLimited(self.service, f"too many requests (HTTP 429); the limit resets in {reset_in:.0f} s")
        error = error_from_response(self.service, resp)
        error.retry_after = max(0.0, reset_in)
        return error

    def download(self, url: str, dest: Path, *, deadline: float, max_bytes: int, cancelled: Any = None) -> None:
        guard = self.active_guard()
        guard.call(lambda: self.client.download(url, dest, timeout=guard.request_timeout(deadline),
                                                cancelled=cancelled, max_bytes=max_bytes),
                   operation="download", deadline=deadline)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            searches = dict(self.searches)
        return {"service": self.service, "searches": searches, **self.client.stats(),
                "rate_limit": self.budget.snapshot()}


class Pexels(StockService):
    service = "pexels"
    env_var = "PEXELS_API_KEY"
    label = "Pexels"
    reset_is_epoch = True
    paths = {"video": "/videos/search", "photo": "/v1/search"}

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"Authorization": key}

    def params(self, kind: str, query: str, width: int, height: int) -> dict[str, Any]:
        params: dict[str, Any] = {"query": query, "per_page": max(1, min(80, self.per_page)),
                                  "orientation": orientation_of(width, height)}
        longest = max(width, height)
        size = "medium" if longest >= 1920 else "small" if longest >= 1280 else None  # Full HD, HD
        if kind == "video" and size:
            params["size"] = size
        return params

    def parse(self, kind: str, body: Any) -> list[Candidate]:
        if kind == "video":
            return [self._video(rank, v) for rank, v in enumerate(body.get("videos") or [])]
        return [self._photo(rank, p) for rank, p in enumerate(body.get("photos") or [])]

    def _video(self, rank: int, v: dict[str, Any]) -> Candidate:
        files = tuple(Rendition(int(f["width"]), int(f["height"]), str(f["link"]), 0, str(f.get("quality") or ""))
                      for f in v.get("video_files") or []
                      if f.get("width") and f.get("height") and f.get("link")
                      and str(f.get("file_type") or "video/mp4") == "video/mp4" and f.get("quality") != "hls")
        tags = " ".join(t for t in v.get("tags") or [] if isinstance(t, str))
        text = " ".join(filter(None, (slug_text(v["url"]), tags)))
        user = v.get("user") or {}
        return Candidate(self.service, str(v["id"]), "video", words_of(text), text, float(v.get("duration") or 0),
                         files, str(user.get("name") or ""), str(user.get("url") or ""), str(v["url"]), rank)

    def _photo(self, rank: int, p: dict[str, Any]) -> Candidate:
        w, h, src = int(p["width"]), int(p["height"]), p.get("src") or {}
        sizes = {"original": (w, h), "large2x": fit_within(w, h, 1880, 1300), "large": fit_within(w, h, 940, 650),
                 "landscape": (1200, 627), "portrait": (800, 1200)}
        renditions = tuple(Rendition(sw, sh, str(src[name]), 0, name) for name, (sw, sh) in sizes.items()
                           if src.get(name))
        text = " ".join(filter(None, (str(p.get("alt") or ""), slug_text(p["url"]))))
        return Candidate(self.service, str(p["id"]), "photo", words_of(text), text, 0.0, renditions,
                         str(p.get("photographer") or ""), str(p.get("photographer_url") or ""), str(p["url"]), rank)


class Pixabay(StockService):
    service = "pixabay"
    env_var = "PIXABAY_API_KEY"
    label = "Pixabay"
    reset_is_epoch = False
    paths = {"video": "/api/videos/", "photo": "/api/"}

    def secret_params(self) -> dict[str, str]:
        return {"key": self._key}

    def params(self, kind: str, query: str, width: int, height: int) -> dict[str, Any]:
        params: dict[str, Any] = {"q": query[:100], "per_page": max(3, min(200, self.per_page)),
                                  "min_width": width, "min_height": height, "safesearch": "true"}
        if kind == "video":
            params["video_type"] = "film"
        else:
            shape = orientation_of(width, height)
            params.update(image_type="photo", orientation={"landscape": "horizontal", "portrait": "vertical"}.get(
                shape, "all"))
        return params

    def parse(self, kind: str, body: Any) -> list[Candidate]:
        return [(self._video if kind == "video" else self._image)(rank, hit)
                for rank, hit in enumerate(body.get("hits") or [])]

    def _credit(self, hit: dict[str, Any]) -> tuple[str, str]:
        user, user_id = str(hit.get("user") or ""), hit.get("user_id")
        return user, f"https://pixabay.com/users/{user}-{user_id}/" if user and user_id else ""

    def _video(self, rank: int, hit: dict[str, Any]) -> Candidate:
        streams = hit.get("videos") or {}
        renditions = tuple(Rendition(int(s["width"]), int(s["height"]), str(s["url"]), int(s.get("size") or 0), name)
                           for name in ("large", "medium", "small", "tiny")
                           if isinstance(s := streams.get(name), dict) and s.get("url") and s.get("width"))
        text = str(hit.get("tags") or "")
        creator, creator_url = self._credit(hit)
        return Candidate(self.service, str(hit["id"]), "video", words_of(text), text,
                         float(hit.get("duration") or 0), renditions, creator, creator_url, str(hit["pageURL"]), rank)

    def _image(self, rank: int, hit: dict[str, Any]) -> Candidate:
        w, h = int(hit.get("imageWidth") or 0), int(hit.get("imageHeight") or 0)
        renditions = []
        for name, box in (("largeImageURL", 1280), ("webformatURL", 640)):
            if hit.get(name) and w and h:
                renditions.append(Rendition(*fit_within(w, h, box, box), str(hit[name]), 0, name))
        text = str(hit.get("tags") or "")
        creator, creator_url = self._credit(hit)
        return Candidate(self.service, str(hit["id"]), "photo", words_of(text), text, 0.0, tuple(renditions),
                         creator, creator_url, str(hit["pageURL"]), rank)


SERVICES: dict[str, type[StockService]] = {"pexels": Pexels, "pixabay": Pixabay}
