"""A declarative, config-driven batch video renderer (see README.md)."""

from renderer.ops.malloc import cap_arenas

cap_arenas()  # every process of the renderer (orchestrator, workers, the voice process): renderer/ops/malloc.py
