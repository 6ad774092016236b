"""``python -m renderer.fakes``: local doubles of the cloud APIs (``renderer/devtools/fakes.py``)."""

from renderer.cli import run
from renderer.devtools import fakes

if __name__ == "__main__":
    run(fakes.main)
