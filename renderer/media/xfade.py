"""ffmpeg's xfade transitions, by the names config uses for them."""

from __future__ import annotations

# xfade's transitions (ffmpeg 5.1; later versions keep these and add more)
XFADE = ("fade", "wipeleft", "wiperight", "wipeup", "wipedown", "slideleft", "slideright", "slideup", "slidedown",
         "circlecrop", "rectcrop", "distance", "fadeblack", "fadewhite", "radial", "smoothleft", "smoothright",
         "smoothup", "smoothdown", "circleopen", "circleclose", "vertopen", "vertclose", "horzopen", "horzclose",
         "dissolve", "pixelize", "diagtl", "diagtr", "diagbl", "diagbr", "hlslice", "hrslice", "vuslice", "vdslice",
         "hblur", "fadegrays", "wipetl", "wipetr", "wipebl", "wipebr", "squeezeh", "squeezev", "zoomin",
         "fadefast", "fadeslow")
ALIASES = {"crossfade": "fade"}


class TransitionError(ValueError):
    pass


def xfade_name(name: str, setting: str = "assembly.transition") -> str:
    """xfade's name for the transition ``setting`` names; a clear error for any other."""
    if ALIASES.get(name, name) not in XFADE:
        raise TransitionError(f"{setting}={name!r} is not a transition ffmpeg's xfade knows: use one of "
                              f"{', '.join((*ALIASES, *XFADE))}")
    return ALIASES.get(name, name)
