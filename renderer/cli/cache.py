"""``python -m renderer.cache``: the stage cache's size (``stats``) and a least-recently-used ``prune``."""

from __future__ import annotations

import argparse
import re
import sys

from renderer.engine.cache import Cache
from renderer.ops.exits import Exit
from renderer.ops.files import human


def parse_size(text: str) -> int:
    """'5G', '500M', '1.5GB', '1024' -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, re.I)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 500M, 5G)")
    number, unit = float(match.group(1)), match.group(2).upper()
    return int(number * 1024 ** " KMGT".index(unit or " "))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m renderer.cache", description="Inspect or prune the stage cache.")
    parser.add_argument("--dir", default="outputs/.cache", help="cache directory (default: outputs/.cache)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("stats", help="entries and size")
    prune = sub.add_parser("prune", help="remove least-recently-used entries")
    prune.add_argument("--max-size", type=parse_size, required=True, help="keep at most this much, e.g. 5G")
    prune.add_argument("--wait", action="store_true", help="wait for running batches instead of refusing")
    args = parser.parse_args(argv)
    cache = Cache(args.dir)
    if args.command == "stats":
        s = cache.stats()
        print(f"{s['dir']}: {s['entries']} entries, {human(s['bytes'])}")
        return Exit.OK
    try:
        result = cache.prune(args.max_size, wait=args.wait)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return Exit.FAILED
    print(f"removed {result['removed']} entries ({human(result['freed_bytes'])}); "
          f"{human(result['remaining_bytes'])} remain in {cache.root}")
    return Exit.OK
