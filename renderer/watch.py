"""``python -m renderer.watch``: render a script again on every save (``renderer/cli/watch.py``)."""

from renderer.cli.watch import run

if __name__ == "__main__":
    run()
