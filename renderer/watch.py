"""``python -m renderer.watch``: render a script again on every save (``renderer/cli/watch.py``)."""

from renderer.cli import run, watch

if __name__ == "__main__":
    run(watch.main)
