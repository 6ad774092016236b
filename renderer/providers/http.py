"""HTTP plumbing of the cloud providers: keys from the environment, a session per thread, errors made typed.

Every failure of a request becomes a ``ServiceError`` that says whether a retry may help: timeouts, dropped
connections, truncated bodies, 5xx, 408 and 429 may; other 4xx and the services' account errors
(``invalid_api_key``, ``quota_exceeded``) may not. The key lives only in the session headers: it is never
formatted into a message, a log line or a repr.
"""

from __future__ import annotations

import email.utils
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from renderer.ops.health import latency_percentiles
from renderer.ops.reliability import (
    NON_RETRYABLE_CODES,
    RETRYABLE_CODES,
    Cancelled,
    ServiceError,
    ServiceGuard,
    build_guard,
    retryable_status,
)
from renderer.ops.secrets import env_key

if TYPE_CHECKING:
    import requests

DOWNLOAD_CHUNK = 1 << 16


class MissingAPIKey(RuntimeError):
    """No key in the environment: the pipeline falls back to the offline provider (or stops if told to)."""


def api_key(env_var: str, label: str) -> str:
    """The key a client sends (read by ``secrets.env_key``, as the log redaction reads it)."""
    key = env_key(env_var)
    if not key:
        raise MissingAPIKey(f"{label} needs an API key: set {env_var} in the environment "
                            "(keys are read from the environment only, never from config files)")
    if not key.isprintable() or any(ch.isspace() for ch in key):  # never echo it: say where, not what
        raise MissingAPIKey(f"{env_var} holds spaces or control characters: set it to the key alone")
    return key


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def describe_error(body: Any) -> tuple[str, str]:
    """(code, message) from the error bodies of ElevenLabs — ``{"detail": {"status", "message"}}`` or a
    validation list — and Runway — ``{"error": ..., "issues": [...]}``."""
    if not isinstance(body, dict):
        return "", ""
    detail = body.get("detail")
    if isinstance(detail, dict):
        return str(detail.get("status") or detail.get("code") or ""), str(detail.get("message") or "")
    if isinstance(detail, list):  # FastAPI-style validation errors
        msgs = [f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg', '')}" for d in detail if isinstance(d, dict)]
        return "validation_error", "; ".join(msgs)
    if isinstance(detail, str):
        return "", detail
    if "error" in body:
        issues = body.get("issues") or []
        extra = "; ".join(str(i.get("message", i)) if isinstance(i, dict) else str(i) for i in issues)
        return str(body.get("code") or ""), f"{body['error']}{': ' + extra if extra else ''}"
    return "", ""


def error_from_response(service: str, resp: requests.Response) -> ServiceError:
    try:
        code, message = describe_error(resp.json())
    except ValueError:
        code, message = "", resp.text[:200].strip()
    code = code or f"http_{resp.status_code}"
    message = message or resp.reason or "request failed"
    retryable = (code in RETRYABLE_CODES or retryable_status(resp.status_code)) and code not in NON_RETRYABLE_CODES
    after = retry_after_seconds(resp.headers.get("Retry-After")) if resp.status_code in (429, 503) else None
    return ServiceError(service, resp.status_code, code, message, retryable, retry_after=after)


def json_body(service: str, resp: requests.Response) -> Any:
    """The response's JSON; a body that is not JSON is a broken answer, worth a retry."""
    try:
        return resp.json()
    except ValueError:
        raise ServiceError(service, resp.status_code, "malformed_response", "the answer is not valid JSON",
                           True) from None


class Guarded:
    """A cloud provider's service guard: the one the pipeline sets on ``guard`` (breaker state shared by the
    run), or a local default so the provider also works on its own. Needs ``service``, ``guard``,
    ``_default_guard`` and ``_lock`` set by the provider."""

    service: str
    guard: ServiceGuard | None
    _default_guard: ServiceGuard | None
    _lock: threading.Lock

    def active_guard(self) -> ServiceGuard:
        if self.guard is not None:
            return self.guard
        with self._lock:
            if self._default_guard is None:
                self._default_guard = build_guard(self.service)
            return self._default_guard

    def retries(self) -> int:
        guard = self.guard or self._default_guard
        return guard.summary()["retries"] if guard else 0


class Client:
    """Requests to one service: base URL, auth headers, one session per thread, request counts and latencies."""

    def __init__(self, service: str, base_url: str, headers: dict[str, str]):
        self.service = service
        self.base_url = base_url.rstrip("/")
        self._headers = dict(headers)
        self._local = threading.local()
        self._lock = threading.Lock()
        self.latencies_s: list[float] = []

    def __repr__(self) -> str:
        return f"Client({self.service!r}, {self.base_url!r})"

    def _session(self, auth: bool) -> requests.Session:
        name = "auth_session" if auth else "plain_session"
        session = getattr(self._local, name, None)
        if session is None:
            import requests  # here: an offline render never pays its ~13 MB

            session = requests.Session()
            if auth:
                session.headers.update(self._headers)
            setattr(self._local, name, session)
        return session

    def _send(self, method: str, url: str, *, auth: bool, timeout: float, **kwargs: Any) -> requests.Response:
        import requests

        started = time.monotonic()
        try:
            return self._session(auth).request(method, url, timeout=timeout, **kwargs)
        except requests.Timeout:
            raise ServiceError(self.service, None, "timeout", f"no answer within {timeout:.1f} s", True) from None
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError):
            raise ServiceError(self.service, None, "truncated", "the answer was cut off", True) from None
        except requests.ConnectionError:
            raise ServiceError(self.service, None, "connection", f"could not reach {self.base_url}", True) from None
        except requests.RequestException as exc:  # its text may quote a header: name the kind, nothing more
            raise ServiceError(self.service, None, "request", f"the request could not be made "
                               f"({type(exc).__name__})", False) from None
        finally:
            with self._lock:
                self.latencies_s.append(round(time.monotonic() - started, 4))

    def request(self, method: str, path: str, *, timeout: float, check: bool = True, **kwargs: Any
                ) -> requests.Response:
        """``method`` ``base_url + path`` with the auth headers; an error status raises ServiceError (``check``:
        else the caller reads it, e.g. for the rate-limit headers of a 429)."""
        resp = self._send(method, f"{self.base_url}{path}", auth=True, timeout=timeout, allow_redirects=False,
                          **kwargs)
        if check and resp.status_code >= 400:
            raise error_from_response(self.service, resp)
        return resp

    def download(self, url: str, dest: Path, *, timeout: float, cancelled: Callable[[], bool] | None = None,
                 max_bytes: int | None = None) -> int:
        """GET ``url`` into ``dest`` without the auth headers (output URLs are pre-signed); return its size.
        ``cancelled()`` turning true stops it between chunks (``Cancelled``); a file larger than ``max_bytes``
        (announced or as it arrives) is refused (``too_large``, not retried)."""
        import requests

        resp = self._send("GET", url, auth=False, timeout=timeout, stream=True)
        with resp:
            if resp.status_code >= 400:
                raise error_from_response(self.service, resp)
            expected = int(resp.headers.get("Content-Length") or 0)
            too_large = ServiceError(self.service, None, "too_large", f"the file is larger than "
                                     f"{(max_bytes or 0) / 1e6:g} MB (visual.max_download_mb)", False)
            if max_bytes is not None and expected > max_bytes:
                raise too_large
            size = 0
            stop_at = time.monotonic() + timeout  # the request timeout is per read: bound the whole download
            try:
                with open(dest, "wb") as fh:
                    for chunk in resp.iter_content(DOWNLOAD_CHUNK):
                        if cancelled is not None and cancelled():
                            raise Cancelled(f"{self.service}: download cancelled")
                        fh.write(chunk)
                        size += len(chunk)
                        if max_bytes is not None and size > max_bytes:
                            raise too_large
                        if time.monotonic() > stop_at:
                            raise requests.Timeout()
            except (requests.exceptions.ChunkedEncodingError, requests.ConnectionError):
                raise ServiceError(self.service, None, "truncated", "the download was cut off", True) from None
            except requests.Timeout:
                raise ServiceError(self.service, None, "timeout", "the download stalled", True) from None
        if expected and size != expected:
            raise ServiceError(self.service, None, "truncated", f"downloaded {size} of {expected} bytes", True)
        return size

    def stats(self) -> dict[str, Any]:
        with self._lock:
            latencies = sorted(self.latencies_s)
        return {"requests": len(latencies), "latencies_s": latencies,
                **{f"latency_{p}_s": s for p, s in latency_percentiles(latencies, ordered=True).items()}}
