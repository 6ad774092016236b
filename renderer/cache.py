"""``python -m renderer.cache``: the stage cache's size; prune it (``renderer/cli/cache.py``)."""

from renderer.cli import cache, run

if __name__ == "__main__":
    run(cache.main)
