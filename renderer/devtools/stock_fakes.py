"""Local doubles of the Pexels and Pixabay APIs on 127.0.0.1: their wire protocols over a catalogue of clips.

  GET /videos/search?query=&per_page=&orientation=&size=     (Authorization: <key>)        Pexels videos
  GET /v1/search?query=&per_page=&orientation=                (Authorization: <key>)        Pexels photos
  GET /api/videos/?key=&q=&per_page=&min_width=&min_height=                                  Pixabay videos
  GET /api/?key=&q=&per_page=&image_type=&orientation=&min_width=&min_height=                Pixabay images
  GET /files/<service>/<id>/<rendition>.mp4|.jpg   a real file of that rendition's size, in a colour of its own
  GET /_stats                                      requests per endpoint, refusals over the limit, downloads
Answers use the services' field names (see tests/contracts/pexels_*.json, pixabay_*.json). Pexels matches any
query word (in its title and tags) and ranks by how many; Pixabay needs every word in the tags. Each service
keeps a rate limit (``limits``: requests per window) with its own headers: Pexels' ``X-Ratelimit-*`` on 2xx
answers only (reset as a UNIX time), Pixabay's ``X-RateLimit-*`` on every answer (reset in seconds); a request
over the limit is answered 429 and counted in ``refused`` (a client that keeps the limit never sees one).
Faults, scripted per endpoint (``script("pixabay_videos", "429", "ok")``) or at random (``fault_rate``):
429 (a storm, with the headers), 500, 503, hang, malformed; on downloads also truncated and slow.

The catalogue is a JSON list (``--catalogue FILE``; default: stock_catalogue.json beside this file) of
``{"service": "pexels"|"pixabay", "id": 1001, "kind": "video"|"photo", "title": "...", "tags": [...],
"duration": 12, "width": 3840, "height": 2160, "creator": "..."}``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from renderer.devtools.double import LocalDouble, send
from renderer.media import ffmpeg

CATALOGUE = Path(__file__).with_name("stock_catalogue.json")
ENDPOINTS = ("pexels_videos", "pexels_photos", "pixabay_videos", "pixabay_images", "file")
SEARCHES = ENDPOINTS[:4]
FAULTS = ("429", "500", "503", "hang", "malformed", "truncated", "slow")
LADDER = (2160, 1440, 1080, 720, 540, 360)  # short sides of the renditions a clip comes in
FPS = 5


def tokens(text: str) -> set[str]:
    """The double's own word matching (not the client's: the two must not drift together)."""
    out = set()
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        out.add(word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word)
    return out


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def colour_of(service: str, item_id: Any, rendition: str) -> str:
    """The colour a rendition's file is drawn in: a test reads it back to see which one was picked."""
    digest = hashlib.sha256(f"{service}/{item_id}/{rendition}".encode()).digest()
    return "".join(f"{40 + b % 176:02x}" for b in digest[:3])


def user_id(name: str) -> int:
    return 100000 + int(hashlib.sha256(name.encode()).hexdigest()[:6], 16) % 900000


def ladder(width: int, height: int) -> list[tuple[int, int]]:
    """The rendition sizes of a clip of width x height: the standard short sides it reaches, aspect kept."""
    short, long_ = min(width, height), max(width, height)
    sizes = []
    for side in LADDER:
        if side <= short:
            other = int(round(side * long_ / short / 2) * 2)
            sizes.append((other, side) if width >= height else (side, other))
    return sizes or [(width, height)]


class FakeStock(LocalDouble):
    """Both stock doubles on one server; start/stop it, or use it as a context manager."""

    name = "fake-stock"
    endpoints = ENDPOINTS

    def __init__(self, *, port: int = 0, pexels_key: str | None = None, pixabay_key: str | None = None,
                 catalogue: Path | str | list[dict[str, Any]] | None = None,
                 limits: dict[str, tuple[int, float]] | None = None, fault_rate: float = 0.0,
                 faults: tuple[str, ...] = ("429",), latency: float = 0.0, hang_s: float = 30.0,
                 slow_s: float = 3.0, clip_seconds: float = 2.0, seed: int | None = None):
        super().__init__(port=port, fault_rate=fault_rate, faults=faults, seed=seed)
        self.keys = {"pexels": pexels_key, "pixabay": pixabay_key}  # None: any non-empty key passes
        items = catalogue if isinstance(catalogue, list) else json.loads(
            Path(catalogue or CATALOGUE).read_text(encoding="utf-8"))
        self.items = [dict(item) for item in items]
        self.limits = {"pexels": (200, 3600.0), "pixabay": (100, 60.0), **(limits or {})}
        self.latency, self.hang_s, self.slow_s, self.clip_seconds = latency, hang_s, slow_s, clip_seconds
        self.refused: Counter[str] = Counter()  # requests over the limit: a client that keeps it has none
        self.injected: Counter[str] = Counter()
        self.downloads: list[tuple[str, str, str]] = []
        self.queries: list[tuple[str, dict[str, str]]] = []
        self.windows: dict[str, list[float]] = {s: [0.0, 0.0] for s in self.limits}  # [started, requests]

    # --- test controls ---------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"counts": dict(self.counts), "refused": dict(self.refused), "injected": dict(self.injected),
                    "downloads": [list(d) for d in self.downloads]}

    def item(self, service: str, item_id: Any) -> dict[str, Any]:
        return next(i for i in self.items if i["service"] == service and str(i["id"]) == str(item_id))

    # --- dispatch --------------------------------------------------------------------------------------
    def handle(self, req: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(req.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if parts.path == "/_stats":
            return send(req, 200, json.dumps(self.stats()).encode(), "application/json")
        endpoint = {"/videos/search": "pexels_videos", "/v1/search": "pexels_photos", "/api/videos/": "pixabay_videos",
                    "/api/": "pixabay_images"}.get(parts.path)
        if endpoint is None and parts.path.startswith("/files/"):
            endpoint = "file"
        if endpoint is None:
            return send(req, 404, b"Not Found", "text/plain")
        with self._lock:
            self.counts[endpoint] += 1
        if self.latency:
            self._stopping.wait(self.latency)
        try:
            if endpoint == "file":
                return self._file(req, parts.path)
            self._search(req, endpoint, query)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _window(self, service: str) -> tuple[bool, dict[str, str]]:
        """Count a request against the service's limit: (allowed, the rate-limit headers of its answer)."""
        limit, seconds = self.limits[service]
        with self._lock:
            window = self.windows[service]
            now = time.time()
            if now >= window[0] + seconds:
                window[:] = [now, 0]
            allowed = window[1] < limit
            if allowed:
                window[1] += 1
            else:
                self.refused[service] += 1
            remaining, reset_at = limit - int(window[1]), window[0] + seconds
        if service == "pexels":
            return allowed, {"X-Ratelimit-Limit": str(limit), "X-Ratelimit-Remaining": str(remaining),
                             "X-Ratelimit-Reset": str(int(math.ceil(reset_at)))}
        return allowed, {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining),
                         "X-RateLimit-Reset": str(max(0, int(math.ceil(reset_at - time.time()))))}

    # --- searches --------------------------------------------------------------------------------------
    def _search(self, req: BaseHTTPRequestHandler, endpoint: str, query: dict[str, str]) -> None:
        service = endpoint.split("_")[0]
        if service == "pexels":
            given, expected = req.headers.get("Authorization", ""), self.keys["pexels"]
            if not given or (expected is not None and given != expected):
                return send(req, 401, json.dumps({"error": "Unauthorized"}).encode(), "application/json")
        else:
            given, expected = query.get("key", ""), self.keys["pixabay"]
            if not given or (expected is not None and given != expected):
                return send(req, 400, b"[ERROR 400] Invalid or missing API key ([key]).", "text/plain")
        fault = self._next_fault(endpoint)
        if fault == "hang":
            self._stopping.wait(self.hang_s)
            fault = None
        if fault in ("500", "503"):
            with self._lock:
                self.injected[endpoint] += 1
            return send(req, int(fault), b"Server error (injected)", "text/plain")
        allowed, headers = self._window(service)
        if fault == "429" or not allowed:
            if fault == "429":
                with self._lock:
                    self.injected[endpoint] += 1
            if service == "pexels":  # no rate headers on anything but a 2xx answer
                return send(req, 429, b"Too Many Requests", "text/plain")
            if fault == "429":
                headers = {**headers, "X-RateLimit-Remaining": "0"}
            return send(req, 429, b"API rate limit exceeded", "text/plain", headers)
        with self._lock:
            self.queries.append((endpoint, {k: v for k, v in query.items() if k != "key"}))
        if fault == "malformed":
            return send(req, 200, b'{"videos": [', "application/json", headers if service == "pexels" else headers)
        body = getattr(self, f"_{endpoint}")(query)
        send(req, 200, json.dumps(body).encode(), "application/json", headers)

    def _found(self, service: str, kind: str, words: set[str], *, every: bool) -> list[dict[str, Any]]:
        scored = []
        for item in self.items:
            if item["service"] != service or item.get("kind", "video") != kind:
                continue
            have = tokens(" ".join(item.get("tags", []))) | (set() if every else tokens(item.get("title", "")))
            hits = len(words & have)
            if words and (hits == len(words) if every else hits > 0):
                scored.append((-hits, int(item["id"]), item))
        return [item for _, _, item in sorted(scored, key=lambda s: s[:2])]

    @staticmethod
    def _page(items: list[Any], query: dict[str, str], default: int, top: int) -> tuple[list[Any], int, int]:
        per_page = max(1, min(top, int(query.get("per_page") or default)))
        page = max(1, int(query.get("page") or 1))
        return items[(page - 1) * per_page: page * per_page], page, per_page

    def _shape_ok(self, item: dict[str, Any], query: dict[str, str]) -> bool:
        w, h = int(item["width"]), int(item["height"])
        shape = "landscape" if w > h * 1.1 else "portrait" if h > w * 1.1 else "square"
        wanted = query.get("orientation")
        if wanted in ("landscape", "portrait", "square") and wanted != shape:
            return False
        if wanted in ("horizontal", "vertical") and {"horizontal": "landscape", "vertical": "portrait"}[wanted] != shape:
            return False
        long_side = max(w, h)
        minimum = {"small": 1280, "medium": 1920, "large": 3840}.get(query.get("size", ""), 0)
        return long_side >= minimum and w >= int(query.get("min_width") or 0) and h >= int(query.get("min_height") or 0)

    def _file_url(self, service: str, item_id: Any, name: str, ext: str) -> str:
        return f"{self.url}/files/{service}/{item_id}/{name}.{ext}"

    def _pexels_videos(self, query: dict[str, str]) -> dict[str, Any]:
        found = [i for i in self._found("pexels", "video", tokens(query.get("query", "")), every=False)
                 if self._shape_ok(i, query)]
        page_items, page, per_page = self._page(found, query, 15, 80)
        videos = []
        for item in page_items:
            iid, name = item["id"], item.get("creator", "")
            files = [{"id": iid * 10 + n, "quality": "hd" if min(w, h) >= 720 else "sd",
                      "file_type": "video/mp4", "width": w, "height": h, "fps": 25,
                      "link": self._file_url("pexels", iid, f"{w}x{h}", "mp4")}
                     for n, (w, h) in enumerate(ladder(int(item["width"]), int(item["height"])))]
            files.append({"id": iid * 10 + 9, "quality": "hls", "file_type": "video/mp4", "width": None,
                          "height": None, "fps": None, "link": f"{self.url}/files/pexels/{iid}/playlist.m3u8"})
            videos.append({"id": iid, "width": item["width"], "height": item["height"],
                           "url": f"https://www.pexels.com/video/{slug(item['title'])}-{iid}/",
                           "image": f"https://images.pexels.com/videos/{iid}/free-video-{iid}.jpg",
                           "duration": int(item["duration"]),
                           "user": {"id": user_id(name), "name": name,
                                    "url": f"https://www.pexels.com/@{slug(name)}"},
                           "video_files": files,
                           "video_pictures": [{"id": iid * 100 + n, "nr": n, "picture":
                                               f"https://static-videos.pexels.com/videos/{iid}/pictures/preview-{n}.jpg"}
                                              for n in range(2)]})
        body: dict[str, Any] = {"page": page, "per_page": per_page, "total_results": len(found),
                                "url": f"https://www.pexels.com/search/videos/{slug(query.get('query', ''))}/",
                                "videos": videos}
        if page * per_page < len(found):
            body["next_page"] = f"https://api.pexels.com/videos/search/?page={page + 1}&per_page={per_page}"
        return body

    def _pexels_photos(self, query: dict[str, str]) -> dict[str, Any]:
        found = [i for i in self._found("pexels", "photo", tokens(query.get("query", "")), every=False)
                 if self._shape_ok(i, query)]
        page_items, page, per_page = self._page(found, query, 15, 80)
        photos = []
        for item in page_items:
            iid, name = item["id"], item.get("creator", "")
            src = {v: self._file_url("pexels", iid, v, "jpg") for v in
                   ("original", "large2x", "large", "medium", "small", "portrait", "landscape", "tiny")}
            photos.append({"id": iid, "width": item["width"], "height": item["height"],
                           "url": f"https://www.pexels.com/photo/{slug(item['title'])}-{iid}/",
                           "photographer": name, "photographer_url": f"https://www.pexels.com/@{slug(name)}",
                           "photographer_id": user_id(name),
                           "avg_color": "#" + colour_of("pexels", iid, "original").upper(), "src": src,
                           "liked": False, "alt": item["title"]})
        body: dict[str, Any] = {"total_results": len(found), "page": page, "per_page": per_page, "photos": photos}
        if page * per_page < len(found):
            body["next_page"] = f"https://api.pexels.com/v1/search/?page={page + 1}&per_page={per_page}"
        return body

    def _pixabay_user(self, item: dict[str, Any]) -> dict[str, Any]:
        name = item.get("creator", "")
        return {"user_id": user_id(name), "user": name, "userImageURL": ""}

    def _pixabay_videos(self, query: dict[str, str]) -> dict[str, Any]:
        found = [i for i in self._found("pixabay", "video", tokens(query.get("q", "")), every=True)
                 if self._shape_ok(i, query)]
        page_items, _, _ = self._page(found, query, 20, 200)
        hits = []
        for item in page_items:
            iid, sizes = item["id"], ladder(int(item["width"]), int(item["height"]))
            by_short = {min(w, h): (w, h) for w, h in sizes}
            streams = {}
            for name, side in (("large", 2160), ("medium", 1080), ("small", 720), ("tiny", 540)):
                w, h = by_short.get(side, (0, 0))
                url = self._file_url("pixabay", iid, name, "mp4") if w else ""
                streams[name] = {"url": url, "width": w, "height": h,
                                 "size": int(w * h * item["duration"] * 0.08) if w else 0,
                                 "thumbnail": url.replace(".mp4", ".jpg") if w else ""}
            hits.append({"id": iid, "pageURL": f"https://pixabay.com/videos/{slug(item['title'])}-{iid}/",
                         "type": "film", "tags": ", ".join(item.get("tags", [])), "duration": int(item["duration"]),
                         "videos": streams, "views": 1000, "downloads": 100, "likes": 10, "comments": 1,
                         **self._pixabay_user(item)})
        return {"total": len(found), "totalHits": min(500, len(found)), "hits": hits}

    def _pixabay_images(self, query: dict[str, str]) -> dict[str, Any]:
        found = [i for i in self._found("pixabay", "photo", tokens(query.get("q", "")), every=True)
                 if self._shape_ok(i, query)]
        page_items, _, _ = self._page(found, query, 20, 200)
        hits = []
        for item in page_items:
            iid, w, h = item["id"], int(item["width"]), int(item["height"])

            def box(side: int) -> tuple[int, int]:
                scale = min(1.0, side / max(w, h))
                return round(w * scale), round(h * scale)

            hits.append({"id": iid, "pageURL": f"https://pixabay.com/photos/{slug(item['title'])}-{iid}/",
                         "type": "photo", "tags": ", ".join(item.get("tags", [])),
                         "previewURL": self._file_url("pixabay", iid, "preview", "jpg"),
                         "previewWidth": box(150)[0], "previewHeight": box(150)[1],
                         "webformatURL": self._file_url("pixabay", iid, "webformat", "jpg"),
                         "webformatWidth": box(640)[0], "webformatHeight": box(640)[1],
                         "largeImageURL": self._file_url("pixabay", iid, "large", "jpg"),
                         "imageWidth": w, "imageHeight": h, "imageSize": w * h // 4,
                         "views": 1000, "downloads": 100, "likes": 10, "comments": 1, **self._pixabay_user(item)})
        return {"total": len(found), "totalHits": min(500, len(found)), "hits": hits}

    # --- files -----------------------------------------------------------------------------------------
    def _file(self, req: BaseHTTPRequestHandler, path: str) -> None:
        parts = [p for p in path.split("/") if p]
        if len(parts) != 4:
            return send(req, 404, b"Not Found", "text/plain")
        _, service, item_id, filename = parts
        name, _, ext = filename.rpartition(".")
        try:
            item = self.item(service, item_id)
        except StopIteration:
            return send(req, 404, b"Not Found", "text/plain")
        size = self._size(item, name)
        if size is None or ext not in ("mp4", "jpg"):
            return send(req, 404, b"Not Found", "text/plain")
        fault = self._next_fault("file")
        with self._lock:
            self.downloads.append((service, str(item_id), name))
        data = self._render(service, item, name, size, ext).read_bytes()
        if fault == "500":
            return send(req, 500, b"Server error (injected)", "text/plain")
        content = "video/mp4" if ext == "mp4" else "image/jpeg"
        if fault == "slow":  # the body trickles in over slow_s
            return send(req, 200, data, content, chunks=10, pause=self.slow_s / 10, stop=self._stopping)
        send(req, 200, data, content, truncate=fault == "truncated")

    def _size(self, item: dict[str, Any], name: str) -> tuple[int, int] | None:
        w, h = int(item["width"]), int(item["height"])
        if re.fullmatch(r"\d+x\d+", name):
            size = tuple(int(x) for x in name.split("x"))
            return size if size in ladder(w, h) else None  # type: ignore[return-value]
        by_short = {min(a, b): (a, b) for a, b in ladder(w, h)}
        named = {"large": by_short.get(2160), "medium": by_short.get(1080), "small": by_short.get(720),
                 "tiny": by_short.get(540)}
        if item.get("kind") == "photo":
            def box(bw: int, bh: int) -> tuple[int, int]:
                scale = min(1.0, bw / w, bh / h)
                return max(2, round(w * scale)), max(2, round(h * scale))
            named = {"original": (w, h), "large2x": box(1880, 1300), "large": box(940, 650) if item["service"] ==
                     "pexels" else box(1280, 1280), "medium": box(10000, 350), "small": box(10000, 130),
                     "portrait": (800, 1200), "landscape": (1200, 627), "tiny": (280, 200),
                     "webformat": box(640, 640), "preview": box(150, 150)}
        return named.get(name)

    def _render(self, service: str, item: dict[str, Any], name: str, size: tuple[int, int], ext: str) -> Path:
        """The rendition's file, made once: a flat picture in its own colour at its own size."""
        assert self._dir is not None
        path = self._dir / f"{service}-{item['id']}-{name}.{ext}"
        with self._render_lock:
            if not path.exists():
                w, h = (max(2, v // 2 * 2) for v in size)
                colour = colour_of(service, item["id"], name)
                tmp = path.with_name(f"tmp-{path.name}")
                if ext == "mp4":
                    seconds = max(0.5, min(float(item.get("duration") or 1), self.clip_seconds))
                    ffmpeg.run(["-f", "lavfi", "-i", f"color=c=0x{colour}:s={w}x{h}:r={FPS}:d={seconds:.2f}",
                                "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-f", "mp4",
                                str(tmp)], timeout=120)
                else:
                    ffmpeg.run(["-f", "lavfi", "-i", f"color=c=0x{colour}:s={w}x{h}", "-frames:v", "1", "-f",
                                "image2", "-c:v", "mjpeg", str(tmp)], timeout=60)
                tmp.rename(path)
        return path


