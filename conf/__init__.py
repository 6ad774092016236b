"""The packaged config groups: installed as ``renderer.conf`` (pyproject's package-dir)."""
