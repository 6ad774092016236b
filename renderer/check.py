"""``python -m renderer.check``: parse and validate scripts without rendering (``renderer/cli/check.py``)."""

from renderer.cli.check import run

if __name__ == "__main__":
    run()
