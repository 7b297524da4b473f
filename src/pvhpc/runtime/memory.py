"""Memory tuning for stage processes that receive large frames."""

from __future__ import annotations

import ctypes

__all__ = ["keep_frame_buffers"]

# glibc malloc tuning for large frames (see keep_frame_buffers).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_BYTES, _TRIM_BYTES = 64 << 20, 256 << 20


def keep_frame_buffers() -> bool:
    """Let glibc reuse frame-sized buffers instead of returning them to the kernel.

    Every update of a megapixel frame allocates a new pixel buffer (the old one is
    still shared with the output record) and frees one. With glibc's defaults such
    buffers come from ``mmap`` or shrink the heap when freed, so each frame pays for
    fresh pages again: at 1024x1024, 800 fps this put a consumer 60% above a bare
    monitor, varying from run to run. Buffers up to 64 MiB now come from the heap
    and freed memory is kept for reuse (up to 256 MiB at its top, so a process whose
    queue once held that much stays at that size). Returns False where the C library
    is not glibc; nothing changes then.
    """
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_BYTES) and mallopt(_M_TRIM_THRESHOLD, _TRIM_BYTES))
