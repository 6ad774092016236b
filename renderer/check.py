"""``python -m renderer.check``: parse and validate scripts without rendering (``renderer/cli/check.py``)."""

from renderer.cli import check, run

if __name__ == "__main__":
    run(check.main)
