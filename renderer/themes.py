"""``python -m renderer.themes``: import a published terminal theme, list the installed ones (``renderer/cli/themes.py``)."""

from renderer.cli import run, themes

if __name__ == "__main__":
    run(themes.main)
