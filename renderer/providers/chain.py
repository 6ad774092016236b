"""The providers a script renders with, and what stands in when they fail (the fallback policy).

voice:  configured provider → piper (offline, neural) → espeak-ng (offline) → silence
visual: configured provider → procedural (offline) → a plain backdrop
A provider's config may name the sources tried first when it fails (``then: [library, procedural]``: stock).
A provider whose config says ``fallback: false`` has no stand-ins: its failure fails the script; so does a
provider whose settings are wrong (``ProviderConfigError``: the fix, not a stand-in).
A provider that cannot even start (no API key, no espeak-ng) is replaced by its first working stand-in,
recorded as a fallback. Cloud providers get a service guard (breaker, retries, concurrency) whose breaker
state is shared by every worker of the run through ``state_dir``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hydra.utils import instantiate
from loguru import logger
from omegaconf import DictConfig

from renderer.ops.logs import redact
from renderer.ops.reliability import RunState, build_guard
from renderer.providers.base import ProviderConfigError
from renderer.providers.espeak import EspeakVoice
from renderer.providers.library import LibraryVisual
from renderer.providers.piper import PiperVoice
from renderer.providers.procedural import Backdrop, ProceduralVisual
from renderer.providers.silent import SilentVoice

OFFLINE: dict[str, list[Callable[[], Any]]] = {
    "voice": [PiperVoice, EspeakVoice, SilentVoice],
    "visual": [ProceduralVisual, Backdrop],
}


class ProviderUnavailable(RuntimeError):
    """The configured provider cannot start and its config forbids a fallback."""


@dataclass
class Providers:
    primary: dict[str, Any] = field(default_factory=dict)  # group -> provider in use
    backups: dict[str, list[Any]] = field(default_factory=dict)  # group -> stand-ins, in order
    stand_in: dict[str, bool] = field(default_factory=dict)  # group -> primary is not the configured one
    fallbacks: list[dict[str, str]] = field(default_factory=list)  # start-up fallbacks, for the record

    def cancel(self) -> None:
        """Stop cloud work in flight (e.g. DELETE running Runway tasks); called when a run is interrupted.
        One provider failing to cancel does not keep the others from cancelling."""
        for provider in self.primary.values():
            if hasattr(provider, "cancel"):
                try:
                    provider.cancel()
                except Exception as exc:
                    logger.warning("{}: cancelling failed: {}", getattr(provider, "name", provider),
                                   redact(f"{type(exc).__name__}: {exc}"))

    def services(self) -> dict[str, Any]:
        """Usage and breaker state of every cloud provider in use, for the script's record."""
        out = {}
        for provider in self.primary.values():
            guard = getattr(provider, "guard", None)
            if guard is not None:
                out[provider.service] = {**guard.summary(), "usage": getattr(provider, "stats", {})}
            for service, one in getattr(provider, "guards", {}).items():  # a provider of several services
                out[service] = {**one.summary(), "usage": getattr(provider, "stats", {}).get(service, {})}
        return out


def _stand_ins(group: str, configured: Any) -> list[Any]:
    """Offline stand-ins after ``configured`` (never the same kind of provider again)."""
    chain = OFFLINE[group]
    if type(configured) in chain:
        chain = chain[chain.index(type(configured)) + 1:]
    out = []
    for make in chain:
        try:
            out.append(make())
        except Exception as exc:
            logger.warning("{} stand-in {} unavailable: {}", group, make.__name__, exc)
    return out


def _configured_then(group_cfg: Any) -> list[Any]:
    """The sources a provider's config names to try after it (``then``), built in that order."""
    out = []
    for name in group_cfg.get("then", None) or []:
        if name == "library":
            if not group_cfg.get("library_dir"):
                raise ProviderConfigError("visual.then names library: set visual.library_dir=/path/to/your/clips")
            out.append(LibraryVisual(dir=group_cfg.library_dir))
        elif name == "procedural":
            out.append(ProceduralVisual())
        else:
            raise ProviderConfigError(f"then: {name!r} is not a source to fall back to: use library or procedural")
    return out


def _after(then: list[Any], offline: list[Any]) -> list[Any]:
    """``then``, and the offline stand-ins it does not already hold."""
    kinds = {type(p) for p in then}
    return then + [p for p in offline if type(p) not in kinds]


def _wrong_settings(exc: BaseException | None) -> ProviderConfigError | None:
    """The provider's own complaint about its settings, wherever Hydra's instantiate wrapped it."""
    while exc is not None and not isinstance(exc, ProviderConfigError):
        exc = exc.__cause__ or exc.__context__
    return exc


def build(cfg: DictConfig, *, groups: list[str], state_dir: RunState | Path) -> Providers:
    providers = Providers()
    for group in groups:
        group_cfg = cfg[group]
        allowed = group_cfg.get("fallback", True)
        try:
            then = _configured_then(group_cfg) if allowed else []
        except ProviderConfigError as exc:
            raise ProviderUnavailable(f"{group}={group_cfg.name}: {exc}") from None
        try:
            provider = instantiate(group_cfg)
        except Exception as exc:
            if wrong := _wrong_settings(exc):  # not an outage: the fix, not a stand-in
                raise ProviderUnavailable(f"{group}={group_cfg.name}: {wrong}") from None
            reason = redact(f"{type(exc).__name__}: {exc}")
            if not allowed:
                raise ProviderUnavailable(f"{group} provider {group_cfg.name} cannot start and fallback is off: "
                                          f"{reason}") from exc
            backups = _after(then, _stand_ins(group, None))
            if not backups:
                raise ProviderUnavailable(f"no {group} provider can start: {reason}") from exc
            provider = backups.pop(0)
            providers.stand_in[group] = True
            providers.fallbacks.append({"node": group, "from": group_cfg.name, "to": provider.name, "reason": reason})
            logger.warning("{} provider {} cannot start, using {}: {}", group, group_cfg.name, provider.name, reason)
        else:
            providers.stand_in[group] = False
            backups = _after(then, _stand_ins(group, provider)) if allowed else []
            service = getattr(provider, "service", None)
            if service:
                provider.guard = build_guard(service, cfg.breaker, cfg.retry, state_dir=state_dir,
                                             timeout_s=cfg.limits.api_timeout_s,
                                             max_concurrency=cfg.limits.api_concurrency[service])
            if hasattr(provider, "connect"):  # several services (stock): a guard each, the run's rate budgets
                provider.connect({s: build_guard(s, cfg.breaker, cfg.retry, state_dir=state_dir,
                                                 timeout_s=cfg.limits.api_timeout_s,
                                                 max_concurrency=cfg.limits.api_concurrency[s])
                                  for s in provider.services}, state=state_dir, cache_dir=cfg.cache.dir)
                providers.fallbacks += provider.start_fallbacks()
        providers.primary[group] = provider
        providers.backups[group] = backups
    return providers
