"""The providers a script renders with, and what stands in when they fail (the fallback policy).

voice:  configured provider → piper (offline, neural) → espeak-ng (offline) → silence
visual: configured provider → procedural (offline) → a plain backdrop
A provider's config may name the sources tried first when it fails (``then: [library, procedural]``: stock).
A provider whose config says ``fallback: false`` has no stand-ins: its failure fails the script; so does a
provider whose settings are wrong (``ProviderConfigError``: the fix, not a stand-in).
A provider that cannot even start (no API key, no espeak-ng) is replaced by its first working stand-in,
recorded as a fallback. Cloud providers get a service guard (breaker, retries, concurrency) whose breaker
state is shared by every worker of the run through ``state_dir``.

Every provider is built from its schema (renderer/config.py), the one place its defaults live: the configured
one from the composed group config, a stand-in (``OFFLINE``) from its own schema with the configured provider's
settings of the same names, so the user's config holds for it too: ``visual=runway visual.sources='[life]'``
falls back to procedural clips drawn from ``life`` (runway carries the procedural stand-in's ``scale``, ``fps``
and ``sources``; the library's and stock's ``fps`` is its stand-in's too). The sources a provider's ``then``
names (``THEN``) are built the same way (stock's ``fit``, ``zoom`` and ``fps`` hold for its library), the
library's folder from the provider's ``library_dir``. Not shared: ``name``, ``_target_`` and ``speakers``, whose
values are each provider's own voice names (ElevenLabs voice ids, piper models, espeak-ng voices), so voice
stand-ins speak with their schema's voices. A stand-in of the configured provider's own kind (the bundled piper
voice when the configured piper model cannot load) takes none of its settings: those are what failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from loguru import logger
from omegaconf import DictConfig, OmegaConf

from renderer.config import (
    BackdropVisualConfig,
    EspeakVoiceConfig,
    LibraryVisualConfig,
    PiperVoiceConfig,
    ProceduralVisualConfig,
    SilentVoiceConfig,
)
from renderer.ops.logs import redact
from renderer.ops.reliability import RunState, build_guard
from renderer.providers.base import ProviderConfigError

# the offline stand-ins of each group, in order, by schema
OFFLINE: dict[str, list[type]] = {
    "voice": [PiperVoiceConfig, EspeakVoiceConfig, SilentVoiceConfig],
    "visual": [ProceduralVisualConfig, BackdropVisualConfig],
}
# the sources a provider's ``then`` may name, by schema; each is built as a stand-in is (``library`` from the
# provider's ``library_dir``)
THEN: dict[str, type] = {"library": LibraryVisualConfig, "procedural": ProceduralVisualConfig}
OWN = ("_target_", "name", "speakers")  # settings a stand-in never takes from the configured provider


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
        _each(self.primary.values(), "cancel", "cancelling")

    def release(self, group: str | None = None) -> None:
        """The script needs nothing more of ``group`` (of any group, when None): its providers let go of what they
        hold for it (piper: the voice process, which exits once no script holds it). Never raises."""
        for name in [group] if group is not None else list(self.primary):
            _each([self.primary.get(name), *self.backups.get(name, [])], "release", "letting go")

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


def _each(providers: Iterable[Any], method: str, doing: str) -> None:
    """``method()`` of every provider that has it; one failing (logged) does not stop the others."""
    for provider in providers:
        if hasattr(provider, method):
            try:
                getattr(provider, method)()
            except Exception as exc:
                logger.warning("{}: {} failed: {}", getattr(provider, "name", provider), doing,
                               redact(f"{type(exc).__name__}: {exc}"))


def warm_up(cfg: DictConfig) -> None:
    """Let the configured providers that keep a machine-wide resource (piper's voice process) start it now, in
    the background, before the run needs it (their ``warm_up(settings)``)."""
    for group in OFFLINE:
        try:
            provider = get_class(cfg[group]._target_)
        except Exception:  # a provider that cannot be found says so where the run builds it
            continue
        if callable(getattr(provider, "warm_up", None)):
            provider.warm_up(cfg[group])


def make(schema: type, **settings: Any) -> Any:
    """The provider ``schema`` names, built from the schema's defaults with ``settings`` over them (checked against
    it, as a config override is); a provider that refuses them raises its own error."""
    try:
        return instantiate(OmegaConf.merge(OmegaConf.structured(schema), settings))
    except InstantiationException as exc:
        error = exc.__cause__ or exc
    raise error  # outside the handler: Hydra's wrapper does not become its context (a loop back to it)


def stand_in_settings(schema: type, configured: DictConfig) -> dict[str, Any]:
    """The configured provider's settings a stand-in of ``schema`` is built with: those of the same names but
    ``OWN``; none when it is of the configured kind (see the module's docstring)."""
    if configured.get("_target_") == schema._target_:
        return {}
    return {f.name: configured[f.name] for f in fields(schema) if f.name in configured and f.name not in OWN}


def _configured_then(configured: DictConfig) -> list[tuple[type, dict[str, Any]]]:
    """The sources the ``configured`` provider names to try after it (``then``), in that order: each one's schema
    and the settings it takes besides the shared ones (the library's folder)."""
    out = []
    for name in configured.get("then", None) or []:
        if name not in THEN:
            raise ProviderConfigError(f"then: {name!r} is not a source to fall back to: use "
                                      f"{' or '.join(THEN)}")
        extra = {}
        if name == "library":
            if not configured.get("library_dir"):
                raise ProviderConfigError("visual.then names library: set visual.library_dir=/path/to/your/clips")
            extra["dir"] = configured.library_dir
        out.append((THEN[name], extra))
    return out


def _stand_ins(group: str, configured: DictConfig, *, started: bool) -> list[Any]:
    """The ``configured`` provider's own fallback sources (``then``), then the offline stand-ins they do not
    already hold; once it has ``started``, none of its kind again."""
    try:
        then = _configured_then(configured)
    except ProviderConfigError as exc:  # the fix, not a stand-in
        raise ProviderUnavailable(f"{group}={configured.name}: {exc}") from None
    chain = OFFLINE[group]
    kinds = [schema._target_ for schema in chain]
    if started and configured.get("_target_") in kinds:
        chain = chain[kinds.index(configured._target_) + 1:]
    chosen = {schema._target_ for schema, _ in then}
    out = []
    for schema, extra in then + [(schema, {}) for schema in chain if schema._target_ not in chosen]:
        try:
            out.append(make(schema, **{**stand_in_settings(schema, configured), **extra}))
        except Exception as exc:
            if wrong := _wrong_settings(exc):  # the user's settings it was given: the fix, not the next stand-in
                raise ProviderUnavailable(f"{group}={configured.name}: {wrong}") from None
            logger.warning("{} stand-in {} unavailable: {}", group, schema.name, exc)
    return out


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
            provider = instantiate(group_cfg)
        except Exception as exc:
            if wrong := _wrong_settings(exc):  # not an outage: the fix, not a stand-in
                raise ProviderUnavailable(f"{group}={group_cfg.name}: {wrong}") from None
            reason = redact(f"{type(exc).__name__}: {exc}")
            if not allowed:
                raise ProviderUnavailable(f"{group} provider {group_cfg.name} cannot start and fallback is off: "
                                          f"{reason}") from exc
            backups = _stand_ins(group, group_cfg, started=False)
            if not backups:
                raise ProviderUnavailable(f"no {group} provider can start: {reason}") from exc
            provider = backups.pop(0)
            providers.stand_in[group] = True
            providers.fallbacks.append({"node": group, "from": group_cfg.name, "to": provider.name, "reason": reason})
            logger.warning("{} provider {} cannot start, using {}: {}", group, group_cfg.name, provider.name, reason)
        else:
            providers.stand_in[group] = False
            backups = _stand_ins(group, group_cfg, started=True) if allowed else []
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
