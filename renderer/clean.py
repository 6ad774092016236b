"""``python -m renderer.clean``: remove old run dirs (``renderer/cli/clean.py``)."""

from renderer.cli.clean import run

if __name__ == "__main__":
    run()
