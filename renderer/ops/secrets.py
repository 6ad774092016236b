"""The API keys: read from the environment in this one place, the same way for the clients that send them and
the redaction that keeps them out of every log, record and report."""

from __future__ import annotations

import os

SECRET_ENV_VARS = ("ELEVENLABS_API_KEY", "RUNWAY_API_KEY", "PEXELS_API_KEY", "PIXABAY_API_KEY")


def env_key(name: str) -> str:
    """The key in ``$name`` as it is sent: without the whitespace around it (a CR left by a Windows editor,
    a newline from ``$(cat key.txt)``); "" when unset."""
    return os.environ.get(name, "").strip()


def secret_values() -> list[str]:
    """Every key set in the environment, as ``env_key`` reads it (the form that is sent, and the core of the
    raw value, so replacing it hides both)."""
    return [value for value in map(env_key, SECRET_ENV_VARS) if value]
