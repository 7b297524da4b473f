"""Example processor: split every frame into a grid of tiles, published one by one.

Run it with::

    pvapy-hpc-consumer --input-channel pvapy:image --output-channel split:*:output \\
        --processor-file examples/splitAdImageProcessorExample.py \\
        --processor-class SplitAdImageProcessor --processor-args '{"nx": 1920, "ny": 1080}'

``nx``, ``ny`` are the tile size in pixels; a 3840x2160 frame gives a 2x2 grid.
Tiles are published row by row (``tileIndexY`` 0 first, then ``tileIndexX``
0, 1, ...). Each tile is an NTNDArray that keeps the frame's ``uniqueId``, dtype,
colour mode, attributes and ``dataTimeStamp``, and adds the attributes

``tileIndexX``, ``tileIndexY``   position in the grid (0-based)
``nTilesX``, ``nTilesY``         grid size
``tileOffsetX``, ``tileOffsetY`` pixel offset of the tile in the frame
``frameSizeX``, ``frameSizeY``   size of the whole frame

and, as areaDetector's ROI plugin does, the x/y ``dimension`` entries carry the
offset and the full frame size (``offset``, ``fullSize``). Every tile gets its own,
strictly increasing ``timeStamp``: a distributor downstream tells updates apart by
it, and tiles with equal timestamps would not be distributed.

A frame whose size is not a multiple of the tile size is not split: it is counted in
``nFramesRejected`` and the first such frame of each size is logged; the stream goes on.
``nx``/``ny`` can be changed with ``configure`` while data flows.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pvaccess as pva

from pvhpc.processors.ad_image import (
    COLOR_MODE_MONO,
    COLOR_MODE_RGB1,
    AdImageProcessor,
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


def tile_grid(frame_nx: int, frame_ny: int, nx: int, ny: int) -> tuple[int, int]:
    """Number of tiles ``(along x, along y)`` of an ``nx`` x ``ny`` grid on a frame.

    Raises ``ValueError`` saying which size does not divide.
    """
    if frame_nx % nx or frame_ny % ny:
        raise ValueError(
            f"frame size {frame_nx}x{frame_ny} is not a multiple of the tile size {nx}x{ny}"
        )
    return frame_nx // nx, frame_ny // ny


def xy_dimension_indices(color_mode: int, ndim: int) -> tuple[int, int]:
    """Indices of the x and y entries in an NTNDArray ``dimension`` list."""
    if ndim == 3 and color_mode == COLOR_MODE_RGB1:
        return 1, 2
    if ndim == 3 and color_mode == 4:  # RGB3: [nx, ny, 3]
        return 0, 1
    if ndim == 3:  # RGB2: [nx, 3, ny]
        return 0, 2
    return 0, 1


def _tile_size(configDict: dict, key: str) -> int:
    value = configDict.get(key)
    if value is None:
        raise ValueError(f"{key} (tile size in pixels) is required")
    size = int(value)
    if size <= 0 or size != float(value):
        raise ValueError(f"{key} must be a positive integer, got {value!r}")
    return size


class _FreshTimestamps:
    """Timestamps of now, strictly increasing across calls (thread-safe)."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> pva.PvTimeStamp:
        with self._lock:
            ns = max(time.time_ns(), self._last + 1)
            self._last = ns
        return pva.PvTimeStamp(ns // 1_000_000_000, ns % 1_000_000_000, 0)


class SplitAdImageProcessor(AdImageProcessor):
    """Split each frame into ``nx`` x ``ny`` tiles and publish every tile.

    ``process`` runs in the runtime's processing thread, publishes the tiles and
    returns ``None``. It raises only for a frame whose pixels cannot be read; a frame
    the tile size does not divide is counted and skipped. Construction raises
    ``ValueError`` for a missing or non-positive ``nx``/``ny``.
    """

    def __init__(self, configDict: dict | None = None) -> None:
        super().__init__(configDict)
        self._size = (_tile_size(self.configDict, "nx"), _tile_size(self.configDict, "ny"))
        self._stamps = _FreshTimestamps()
        self._lock = threading.Lock()
        self._reported_sizes: set[tuple[int, int, int, int]] = set()
        self.resetStats()

    @property
    def nx(self) -> int:
        return self._size[0]

    @property
    def ny(self) -> int:
        return self._size[1]

    def configure(self, configDict: dict) -> None:
        """Change the tile size (``nx``, ``ny``) from the next frame on."""
        if "nx" in configDict or "ny" in configDict:
            merged = {"nx": self.nx, "ny": self.ny, **configDict}
            self._size = (_tile_size(merged, "nx"), _tile_size(merged, "ny"))
            self.logger.info("Tile size now %dx%d", *self._size)

    def start(self) -> None:
        """Reset statistics; log the tile size."""
        self.resetStats()
        self.logger.info("Splitting frames into %dx%d tiles", self.nx, self.ny)

    def split(self, pvObject: Any) -> list[pva.NtNdArray]:
        """Return the tiles of one frame, in publishing order, without publishing them.

        Raises ``ValueError`` if the frame's size is not a multiple of the tile size.
        """
        nx, ny = self._size
        image = get_image(pvObject)
        color = image.ndim == 3
        color_mode = get_color_mode(pvObject) if color else COLOR_MODE_MONO
        if image.ndim not in (2, 3) or (color and image.shape[2] != 3):
            raise ValueError(f"frame {get_frame_id(pvObject)} is not an image: shape {image.shape}")
        frame_ny, frame_nx = image.shape[:2]
        n_tiles_x, n_tiles_y = tile_grid(frame_nx, frame_ny, nx, ny)
        unique_id = get_frame_id(pvObject)
        base_attributes = [
            a for a in (pvObject["attribute"] or []) if a.get("name") not in TILE_ATTRIBUTES
        ]
        data_time_stamp = pvObject["dataTimeStamp"]
        ix_dim, iy_dim = xy_dimension_indices(color_mode, image.ndim)
        tiles = []
        for tile_y in range(n_tiles_y):
            for tile_x in range(n_tiles_x):
                x0, y0 = tile_x * nx, tile_y * ny
                extra = {
                    "tileIndexX": tile_x,
                    "tileIndexY": tile_y,
                    "nTilesX": n_tiles_x,
                    "nTilesY": n_tiles_y,
                    "tileOffsetX": x0,
                    "tileOffsetY": y0,
                    "frameSizeX": frame_nx,
                    "frameSizeY": frame_ny,
                }
                tile = make_frame(
                    image[y0 : y0 + ny, x0 : x0 + nx],
                    unique_id,
                    color_mode=color_mode if color else None,
                    time_stamp=self._stamps.next(),
                    data_time_stamp=data_time_stamp,
                    attributes=base_attributes
                    + [{"name": k, "value": pva.PvInt(v)} for k, v in extra.items()],
                )
                dims = tile["dimension"]
                dims[ix_dim]["offset"], dims[ix_dim]["fullSize"] = x0, frame_nx
                dims[iy_dim]["offset"], dims[iy_dim]["fullSize"] = y0, frame_ny
                tile["dimension"] = dims
                tiles.append(tile)
        return tiles

    def process(self, pvObject: Any) -> None:
        """Split one frame and publish its tiles; returns ``None``."""
        try:
            tiles = self.split(pvObject)
        except ValueError as exc:
            with self._lock:
                self._n_rejected += 1
            key = (*self._size, *_frame_dims(pvObject))
            if key not in self._reported_sizes:
                self._reported_sizes.add(key)
                self.logger.error(
                    "Frame %d not split: %s (further frames of this size are only counted, "
                    "in nFramesRejected)",
                    get_frame_id(pvObject),
                    exc,
                )
            return None
        for tile in tiles:
            self.updateOutputChannel(tile)
        with self._lock:
            self._n_split += 1
            self._n_tiles += len(tiles)
        return None

    def resetStats(self) -> None:
        """Zero the counters; rates restart now."""
        with self._lock:
            self._n_split = 0
            self._n_tiles = 0
            self._n_rejected = 0
            self._since = time.monotonic()

    def getStats(self) -> dict:
        """``nFramesSplit``, ``nTilesPublished``, ``nFramesRejected``, ``splitRate``, ``tileRate``."""
        with self._lock:
            elapsed = time.monotonic() - self._since
            return {
                "nFramesSplit": self._n_split,
                "nTilesPublished": self._n_tiles,
                "nFramesRejected": self._n_rejected,
                "splitRate": self._n_split / elapsed if elapsed > 0 else 0.0,
                "tileRate": self._n_tiles / elapsed if elapsed > 0 else 0.0,
            }

    def getStatsPvaTypes(self) -> dict:
        """PVA types of :meth:`getStats`."""
        return {
            "nFramesSplit": pva.UINT,
            "nTilesPublished": pva.UINT,
            "nFramesRejected": pva.UINT,
            "splitRate": pva.DOUBLE,
            "tileRate": pva.DOUBLE,
        }


def _frame_dims(pvObject: Any) -> tuple[int, ...]:
    try:
        return tuple(int(d["size"]) for d in pvObject["dimension"])
    except (KeyError, TypeError, pva.FieldNotFound):
        return ()
