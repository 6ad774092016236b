"""``python -m renderer.cache``: the stage cache's size; prune it (``renderer/cli/cache.py``)."""

from renderer.cli.cache import run

if __name__ == "__main__":
    run()
