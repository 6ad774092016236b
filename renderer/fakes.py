"""``python -m renderer.fakes``: local doubles of the cloud APIs (``renderer/devtools/fakes.py``)."""

from renderer.devtools.fakes import run

if __name__ == "__main__":
    run()
