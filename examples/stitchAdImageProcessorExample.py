"""Example processor for the collector: stitch the tiles of each frame back together.

Run it in a collector gathering the outputs of the consumers that processed the
tiles made by ``splitAdImageProcessorExample.py``::

    pvapy-hpc-collector --producer-id-list 1,2,3,4 --input-channel process:*:output \\
        --output-channel collector:*:output \\
        --processor-file examples/stitchAdImageProcessorExample.py \\
        --processor-class StitchAdImageProcessor --processor-args '{"nx": 3840, "ny": 2160}'

Tiles are gathered by ``uniqueId`` and placed by their ``tileOffsetX``/``tileOffsetY``
attributes; they may arrive in any order, and tiles of different frames may be
interleaved. Once every tile of a frame has arrived (``nTilesX`` x ``nTilesY``), the
frame is published: same pixels, dtype, dimensions, colour mode and attributes as
the frame that was split (the tile attributes are removed), the original
``dataTimeStamp``, and a fresh ``timeStamp``.

Configuration (``--processor-args``, or ``configure`` at runtime):

``nx``, ``ny``
    full frame size; tiles of frames of another size are rejected and counted.
    Without them, the size the tiles carry (``frameSizeX``/``frameSizeY``) is used.
``purgeAfterFrames`` [10]
    an incomplete frame is dropped once this many frames with a higher ``uniqueId``
    have been completed.
``purgeTimeout`` [30]
    ...or once its first tile is this many seconds old (0: never). Checked when
    tiles arrive, and at stop, where every incomplete frame is dropped.

Dropped frames are counted in ``nFramesPurged``; tiles that arrive for a frame
already published or dropped, in ``nTilesLate``; a tile received twice, in
``nTilesDuplicate``; tiles that do not fit (no tile attributes, wrong frame size,
wrong dtype or shape), in ``nTilesRejected``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

import numpy as np
import pvaccess as pva

from pvhpc.processors.ad_image import (
    COLOR_MODE_MONO,
    AdImageProcessor,
    get_attributes,
    get_color_mode,
    get_frame_id,
    get_image,
    make_frame,
)

TILE_ATTRIBUTES = (
    "tileIndexX",
    "tileIndexY",
    "nTilesX",
    "nTilesY",
    "tileOffsetX",
    "tileOffsetY",
    "frameSizeX",
    "frameSizeY",
)
_DONE_MEMORY = 10_000


class TileError(ValueError):
    """A tile does not fit the frame it claims to belong to; ``reason`` names the kind."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class _PendingFrame:
    __slots__ = (
        "image",
        "n_tiles",
        "tiles",
        "color_mode",
        "attributes",
        "data_time_stamp",
        "first_arrival",
        "n_newer_complete",
    )

    def __init__(self, image, n_tiles, color_mode, attributes, data_time_stamp):
        self.image = image
        self.n_tiles = n_tiles
        self.tiles: set[tuple[int, int]] = set()
        self.color_mode = color_mode
        self.attributes = attributes
        self.data_time_stamp = data_time_stamp
        self.first_arrival = time.monotonic()
        self.n_newer_complete = 0


def _optional_size(configDict: dict, key: str) -> int | None:
    value = configDict.get(key)
    if value is None:
        return None
    size = int(value)
    if size <= 0 or size != float(value):
        raise ValueError(f"{key} must be a positive integer, got {value!r}")
    return size


class StitchAdImageProcessor(AdImageProcessor):
    """Gather tiles by ``uniqueId`` and publish each frame once all its tiles arrived.

    ``process`` runs in the collector's processing thread, one tile at a time; it
    returns the stitched frame when a tile completes one, else ``None``, and never
    raises for a tile that does not fit (it is counted and logged once per reason).
    ``configure`` may be called from the control thread at any time.
    """

    def __init__(self, configDict: dict | None = None) -> None:
        super().__init__(configDict)
        self.nx = _optional_size(self.configDict, "nx")
        self.ny = _optional_size(self.configDict, "ny")
        self.purgeAfterFrames = int(self.configDict.get("purgeAfterFrames", 10))
        self.purgeTimeout = float(self.configDict.get("purgeTimeout", 30))
        self._pending: dict[int, _PendingFrame] = {}
        self._done: OrderedDict[int, None] = OrderedDict()
        self._last_stamp = 0
        self._lock = threading.Lock()
        self._logged: set[str] = set()
        self.resetStats()

    def configure(self, configDict: dict) -> None:
        """Change ``nx``, ``ny``, ``purgeAfterFrames`` or ``purgeTimeout`` while data flows."""
        if "nx" in configDict:
            self.nx = _optional_size(configDict, "nx")
        if "ny" in configDict:
            self.ny = _optional_size(configDict, "ny")
        if "purgeAfterFrames" in configDict:
            self.purgeAfterFrames = int(configDict["purgeAfterFrames"])
        if "purgeTimeout" in configDict:
            self.purgeTimeout = float(configDict["purgeTimeout"])

    def start(self) -> None:
        """Reset statistics; log the expected frame size."""
        self.resetStats()
        size = f"{self.nx}x{self.ny}" if self.nx and self.ny else "given by the tiles"
        self.logger.info("Stitching tiles into frames of size %s", size)

    def _log_once(self, reason: str, message: str, *args: Any) -> None:
        if reason not in self._logged:
            self._logged.add(reason)
            self.logger.error(message + " (further cases are only counted)", *args)

    def _fresh_timestamp(self) -> pva.PvTimeStamp:
        ns = max(time.time_ns(), self._last_stamp + 1)
        self._last_stamp = ns
        return pva.PvTimeStamp(ns // 1_000_000_000, ns % 1_000_000_000, 0)

    def _place(self, tile: Any) -> tuple[int, _PendingFrame] | None:
        """Put one tile in its frame; return the frame if it is now complete."""
        unique_id = get_frame_id(tile)
        attrs = get_attributes(tile)
        try:
            ix, iy = int(attrs["tileIndexX"]), int(attrs["tileIndexY"])
            n_x, n_y = int(attrs["nTilesX"]), int(attrs["nTilesY"])
            x0, y0 = int(attrs["tileOffsetX"]), int(attrs["tileOffsetY"])
            frame_nx, frame_ny = int(attrs["frameSizeX"]), int(attrs["frameSizeY"])
        except (KeyError, TypeError, ValueError) as exc:
            raise TileError(
                "not a tile", f"frame {unique_id}: not a tile, missing attribute {exc}"
            ) from exc
        if (self.nx and frame_nx != self.nx) or (self.ny and frame_ny != self.ny):
            raise TileError(
                "frame size",
                f"frame {unique_id}: tile of a {frame_nx}x{frame_ny} frame, expected "
                f"{self.nx or frame_nx}x{self.ny or frame_ny}",
            )
        if unique_id in self._done:
            self._n_late += 1
            self.logger.debug(
                "Tile (%d,%d) of frame %d came after the frame was published or dropped",
                ix,
                iy,
                unique_id,
            )
            return None
        image = get_image(tile)
        tile_ny, tile_nx = image.shape[:2] if image.ndim >= 2 else (0, 0)
        if (
            image.ndim not in (2, 3)
            or not (0 <= ix < n_x and 0 <= iy < n_y)
            or tile_nx * n_x != frame_nx
            or tile_ny * n_y != frame_ny
            or x0 != ix * tile_nx
            or y0 != iy * tile_ny
        ):
            raise TileError(
                "grid",
                f"frame {unique_id}: tile ({ix},{iy}) of shape {image.shape} at ({x0},{y0}) "
                f"does not fit a {n_x}x{n_y} grid on {frame_nx}x{frame_ny}",
            )
        color_mode = get_color_mode(tile) if image.ndim == 3 else COLOR_MODE_MONO
        entry = self._pending.get(unique_id)
        if entry is None:
            attributes = [a for a in tile["attribute"] if a.get("name") not in TILE_ATTRIBUTES]
            full = np.empty((frame_ny, frame_nx, *image.shape[2:]), dtype=image.dtype)
            entry = _PendingFrame(full, n_x * n_y, color_mode, attributes, tile["dataTimeStamp"])
            self._pending[unique_id] = entry
        elif (
            entry.image.dtype != image.dtype
            or entry.image.shape[2:] != image.shape[2:]
            or entry.n_tiles != n_x * n_y
            or entry.color_mode != color_mode
        ):
            raise TileError(
                "inconsistent",
                f"frame {unique_id}: tile ({ix},{iy}) is {image.dtype} {image.shape}, "
                f"colour mode {color_mode}, unlike the frame's other tiles",
            )
        if (ix, iy) in entry.tiles:
            self._n_duplicate += 1
            return None
        entry.image[y0 : y0 + tile_ny, x0 : x0 + tile_nx] = image
        entry.tiles.add((ix, iy))
        return (unique_id, entry) if len(entry.tiles) == entry.n_tiles else None

    def _forget(self, unique_id: int) -> None:
        self._pending.pop(unique_id, None)
        self._done[unique_id] = None
        while len(self._done) > _DONE_MEMORY:
            self._done.popitem(last=False)

    def _purge(self, unique_id: int, why: str) -> None:
        entry = self._pending[unique_id]
        self._n_purged += 1
        self._n_tiles_purged += len(entry.tiles)
        self._log_once(
            "purge",
            "Frame %d dropped with %d of %d tiles: %s",
            unique_id,
            len(entry.tiles),
            entry.n_tiles,
            why,
        )
        self._forget(unique_id)

    def _purge_stale(self, completed_id: int | None) -> None:
        now = time.monotonic()
        for unique_id, entry in list(self._pending.items()):
            if completed_id is not None and unique_id < completed_id:
                entry.n_newer_complete += 1
                if 0 < self.purgeAfterFrames <= entry.n_newer_complete:
                    self._purge(unique_id, f"{entry.n_newer_complete} newer frames completed")
                    continue
            if self.purgeTimeout > 0 and now - entry.first_arrival >= self.purgeTimeout:
                self._purge(unique_id, f"incomplete after {self.purgeTimeout:g} s")

    def process(self, pvObject: Any) -> Any:
        """Add one tile; publish and return the frame it completes, else return ``None``."""
        with self._lock:
            self._n_tiles += 1
            try:
                done = self._place(pvObject)
            except TileError as exc:
                self._n_rejected += 1
                self._log_once(exc.reason, "Tile rejected: %s", exc)
                done = None
            frame = None
            if done is not None:
                unique_id, entry = done
                frame = make_frame(
                    entry.image,
                    unique_id,
                    color_mode=entry.color_mode if entry.image.ndim == 3 else None,
                    time_stamp=self._fresh_timestamp(),
                    data_time_stamp=entry.data_time_stamp,
                    attributes=entry.attributes,
                )
                self._forget(unique_id)
                self._n_stitched += 1
            self._purge_stale(done[0] if done is not None else None)
        if frame is not None:
            self.updateOutputChannel(frame)
        return frame

    def stop(self) -> None:
        """Drop (and count) every frame still incomplete; log the totals."""
        with self._lock:
            for unique_id in sorted(self._pending):
                self._purge(unique_id, "incomplete at stop")
        stats = self.getStats()
        self.logger.info(
            "Stitched %d frames from %d tiles; %d incomplete frames dropped",
            stats["nFramesStitched"],
            stats["nTilesReceived"],
            stats["nFramesPurged"],
        )

    def resetStats(self) -> None:
        """Zero the counters; rates restart now (frames being gathered stay)."""
        with self._lock:
            self._n_tiles = 0
            self._n_stitched = 0
            self._n_purged = 0
            self._n_tiles_purged = 0
            self._n_duplicate = 0
            self._n_late = 0
            self._n_rejected = 0
            self._since = time.monotonic()

    def getStats(self) -> dict:
        """Tile and frame counters, frames pending, and ``stitchedRate`` (frames/s)."""
        with self._lock:
            elapsed = time.monotonic() - self._since
            return {
                "nTilesReceived": self._n_tiles,
                "nFramesStitched": self._n_stitched,
                "nFramesPurged": self._n_purged,
                "nTilesPurged": self._n_tiles_purged,
                "nTilesDuplicate": self._n_duplicate,
                "nTilesLate": self._n_late,
                "nTilesRejected": self._n_rejected,
                "nFramesPending": len(self._pending),
                "stitchedRate": self._n_stitched / elapsed if elapsed > 0 else 0.0,
            }

    def getStatsPvaTypes(self) -> dict:
        """PVA types of :meth:`getStats`."""
        types = {k: pva.UINT for k in self.getStats()}
        types["stitchedRate"] = pva.DOUBLE
        return types
