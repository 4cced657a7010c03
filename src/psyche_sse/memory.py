"""Handing freed memory back to the operating system.

CPython frees a forgotten session's objects at once, but glibc's allocator keeps the freed
pages of its heaps for later, so the process's resident size would stay at its peak.
``malloc_trim`` returns them (about 0.1 ms here); where there is no glibc it is not needed or
not available. No ``gc.collect()`` here: a full collection stalls the event loop for tens of
milliseconds, and the collector's own rounds find any cycles soon enough.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable

_trim: Callable[[int], int] | None = None
if sys.platform.startswith("linux"):
    try:
        _trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        _trim = None


def release_memory() -> None:
    """Return free heap pages to the system (glibc only)."""
    if _trim is not None:
        _trim(0)
