"""Progress bars that stay readable when output goes to a log file.

tqdm redraws up to ten times a second. That suits a terminal. In a file,
every redraw is kept: `make demo > log` used to write 158 KB of carriage
returns. When the stream is not a terminal, bars redraw every
``LOG_INTERVAL`` seconds instead, and still print their final state.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, IO, Iterable, Optional

if TYPE_CHECKING:
    from tqdm import tqdm

#: Seconds between redraws when the bar's stream is not a terminal.
LOG_INTERVAL = 30.0


def bar(iterable: Optional[Iterable] = None, *, file: Optional[IO[str]] = None,
        **kwargs: Any) -> "tqdm":
    """A ``tqdm`` bar on ``file`` (stderr by default), throttled off a terminal."""
    from tqdm import tqdm

    stream = sys.stderr if file is None else file
    isatty = getattr(stream, "isatty", None)
    if not (callable(isatty) and isatty()):
        kwargs.setdefault("mininterval", LOG_INTERVAL)
        kwargs.setdefault("maxinterval", LOG_INTERVAL)
    return tqdm(iterable, file=stream, **kwargs)
