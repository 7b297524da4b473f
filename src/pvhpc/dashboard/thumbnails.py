"""Small live pictures of frame channels, made by the dashboard, never at full rate.

:class:`Thumbnails` takes one frame of each watched channel at most every
``period`` seconds with a plain get (never a monitor: the dashboard does not
receive the stream, and a get takes no frame from a distributor's share), shrinks
it with :func:`downscale` and keeps it as a PNG. Only channels that a page shows
(or asked for in the last seconds) are fetched.
"""

from __future__ import annotations

import io
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pvaccess as pva

from ..ntnda import get_frame_id, get_image

__all__ = ["Thumbnails", "Thumbnail", "downscale", "MAX_SIDE", "MIN_PERIOD"]

logger = logging.getLogger("pvhpc.dashboard")

#: Longest side of a thumbnail, in pixels.
MAX_SIDE = 160
#: The shortest period between two frames of one channel (2 Hz).
MIN_PERIOD = 0.5
#: A channel asked for by URL stays fetched this long after the last ask (s).
ASK_TTL = 10.0
#: At most this many channels are fetched (pages can watch any channel by name).
MAX_CHANNELS = 8


def downscale(image: np.ndarray, max_side: int = MAX_SIDE) -> tuple[np.ndarray, tuple, int]:
    """A frame made small: ``(pixels, (lo, hi), factor)``.

    The image (``(ny, nx)`` or ``(ny, nx, 3)``) is cut into ``factor`` × ``factor``
    blocks, ``factor`` the smallest integer that brings both sides to at most
    ``max_side`` (edge rows and columns that fill no whole block are left out), and
    each block becomes its mean. uint8 pixels keep their values (the mean rounded to
    the nearest integer); other types are mapped linearly from the thumbnail's
    range ``(lo, hi)`` onto 0..255. Returns uint8 pixels.
    """
    if image.ndim == 3 and image.shape[2] not in (3, 4):
        image = image[0]  # a stack: its first plane
    if image.ndim not in (2, 3) or image.size == 0:
        raise ValueError(f"not an image: shape {image.shape}")
    ny, nx = image.shape[:2]
    factor = max(1, math.ceil(max(ny, nx) / max_side))
    h, w = ny // factor, nx // factor
    if h == 0 or w == 0:
        factor, h, w = 1, ny, nx
    cut = np.asarray(image[: h * factor, : w * factor], dtype=np.float64)
    blocks = cut.reshape(h, factor, w, factor, *cut.shape[2:])
    small = blocks.mean(axis=(1, 3))
    if image.dtype == np.uint8:
        return np.rint(small).astype(np.uint8), (0, 255), factor
    lo, hi = float(small.min()), float(small.max())
    if hi > lo:
        small = (small - lo) * (255.0 / (hi - lo))
    else:
        small = np.zeros_like(small)
    return np.rint(small).astype(np.uint8), (lo, hi), factor


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    mode = "L" if pixels.ndim == 2 else ("RGB" if pixels.shape[2] == 3 else "RGBA")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), mode).save(buf, "PNG")
    return buf.getvalue()


@dataclass
class Thumbnail:
    """The latest small picture of one channel (or why there is none)."""

    channel: str
    seq: int
    t: float
    unique_id: int | None = None
    width: int = 0
    height: int = 0
    source_shape: tuple = ()
    dtype: str = ""
    range: tuple = ()
    factor: int = 1
    png: bytes = b""
    error: str = ""

    def meta(self) -> dict:
        return {
            "channel": self.channel,
            "seq": self.seq,
            "t": self.t,
            "uniqueId": self.unique_id,
            "width": self.width,
            "height": self.height,
            "sourceShape": list(self.source_shape),
            "dtype": self.dtype,
            "range": list(self.range),
            "factor": self.factor,
            "error": self.error,
        }


class Thumbnails:
    """Fetches the watched channels in a thread of its own, each at most every
    ``period`` seconds (at least :data:`MIN_PERIOD`).

    ``watched()`` (called in that thread) returns the channels pages show now;
    :meth:`ask` (any thread) adds one for :data:`ASK_TTL` seconds; at most
    :data:`MAX_CHANNELS` are fetched, those shown first. ``on_new`` is
    called in the fetching thread with each new :class:`Thumbnail` and must not block.
    """

    def __init__(
        self,
        watched: Callable[[], set[str]],
        on_new: Callable[[Thumbnail], None] | None = None,
        period: float = 1.0,
        max_side: int = MAX_SIDE,
    ):
        self.period = max(MIN_PERIOD, period)
        self.max_side = max_side
        self._watched = watched
        self._on_new = on_new
        self._lock = threading.Lock()
        self._asked: dict[str, float] = {}
        self._latest: dict[str, Thumbnail] = {}
        self._fetched: dict[str, float] = {}
        self._channels: dict[str, pva.Channel] = {}
        self._seq = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="thumbnails", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def ask(self, channel: str) -> None:
        with self._lock:
            self._asked[channel] = time.monotonic()

    def latest(self, channel: str) -> Thumbnail | None:
        with self._lock:
            return self._latest.get(channel)

    def _due(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            self._asked = {c: t for c, t in self._asked.items() if now - t < ASK_TTL}
            wanted = set(self._asked)
        shown = sorted(self._watched())
        wanted = (shown + sorted(wanted - set(shown)))[:MAX_CHANNELS]
        return [c for c in wanted if now - self._fetched.get(c, -1e9) >= self.period]

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            for channel in self._due():
                self._fetched[channel] = time.monotonic()
                thumb = self._take(channel)
                with self._lock:
                    self._latest[channel] = thumb
                if self._on_new is not None:
                    self._on_new(thumb)

    def _take(self, name: str) -> Thumbnail:
        self._seq += 1
        thumb = Thumbnail(name, self._seq, time.time())
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = pva.Channel(name)
            channel.setTimeout(2.0)
        try:
            frame = channel.get("")
            image = get_image(frame)
            if image.size == 0:
                thumb.error = f"no frame on {name} yet"
                return thumb
            pixels, value_range, factor = downscale(image, self.max_side)
        except pva.PvaException as exc:
            thumb.error = f"no frame from {name}: {str(exc).strip().splitlines()[0]}"
            return thumb
        except Exception as exc:  # noqa: BLE001 - not a frame, an empty one, a codec
            thumb.error = f"{name}: not a picture ({type(exc).__name__}: {exc})"
            return thumb
        thumb.unique_id = get_frame_id(frame)
        thumb.height, thumb.width = pixels.shape[:2]
        thumb.source_shape = tuple(image.shape)
        thumb.dtype = str(image.dtype)
        thumb.range = value_range
        thumb.factor = factor
        thumb.png = _png(pixels)
        return thumb
