"""A dependency-free progress bar on stderr, for anything that can take more than a few seconds."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], total: int | None = None, label: str = "") -> Iterator[T]:
    """Yield ``items`` while drawing ``label [#####.....] k/total  elapsed`` on stderr.

    Draws only when stderr is a terminal, so logs and pipes stay clean.
    """
    if total is None:
        total = len(items) if hasattr(items, "__len__") else 0  # type: ignore[arg-type]
    show = sys.stderr.isatty()
    start = time.perf_counter()
    done = 0

    def draw() -> None:
        width = 30
        filled = width * done // total if total else 0
        bar = "#" * filled + "." * (width - filled)
        elapsed = time.perf_counter() - start
        sys.stderr.write(f"\r{label} [{bar}] {done}/{total or '?'}  {elapsed:5.1f}s")
        sys.stderr.flush()

    if show:
        draw()
    for item in items:
        yield item
        done += 1
        if show:
            draw()
    if show:
        sys.stderr.write("\n")
