"""``python -m renderer.clean``: remove old run dirs (``renderer/cli/clean.py``)."""

from renderer.cli import clean, run

if __name__ == "__main__":
    run(clean.main)
