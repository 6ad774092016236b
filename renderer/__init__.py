"""A declarative, config-driven batch video renderer (see README.md)."""

from renderer.ops import malloc

malloc.configure()  # every process of the renderer (orchestrator, workers, the voice process): renderer/ops/malloc.py
