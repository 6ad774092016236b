"""The batch's progress bar: scripts done, and what each script in flight is doing (its running nodes, with
ffmpeg's own progress), from the health monitor's live view. Quiet when stderr is not a terminal or with
``progress=false``."""

from __future__ import annotations

from typing import Any, Callable

from tqdm import tqdm

MAX_SHOWN = 3  # scripts named in the bar; more are counted


def bar(cfg: Any, total: int) -> tqdm:
    # disable=None: tqdm shows the bar only on a terminal
    return tqdm(total=total, desc="scripts", unit="script", dynamic_ncols=True,
                disable=None if cfg.progress else True)


def describe(in_flight: dict[str, dict[str, Any]]) -> str:
    """``s0 segment/1.0 42% [7/15] · s1 voice/2 [3/15]`` for the scripts being rendered."""
    parts = []
    for slug, state in sorted(in_flight.items())[:MAX_SHOWN]:
        nodes = state.get("nodes") or {}
        doing = " ".join(f"{name} {fraction:.0%}" if 0 < fraction < 1 else name
                         for name, fraction in sorted(nodes.items())[:2])
        done, total = state.get("done", 0), state.get("total", 0)
        idle = "publishing" if total and done >= total else "starting"  # before or after its graph
        parts.append(f"{slug} {doing or idle}" + (f" [{done}/{total}]" if total else ""))
    more = len(in_flight) - MAX_SHOWN
    return " · ".join(parts) + (f" · +{more} more" if more > 0 else "")


def follower(progress_bar: tqdm) -> Callable[[dict[str, Any]], None]:
    """For the monitor's ticks: show the in-flight scripts of each snapshot on the bar."""
    def show(snapshot: dict[str, Any]) -> None:
        if not progress_bar.disable:
            progress_bar.set_postfix_str(describe(snapshot["jobs"]["in_flight"]), refresh=True)

    return show
