"""Example processor: rotate every areaDetector frame by a multiple of 90 degrees.

Run it with::

    pvapy-hpc-consumer --input-channel pvapy:image --output-channel proc:*:output \\
        --processor-file examples/hpcAdImageProcessorExample.py \\
        --processor-class HpcAdImageProcessor --processor-args '{"angle": 90}'

Configuration (``--processor-args``, or ``configure`` on the control channel while
data flows): ``angle`` in degrees, a multiple of 90, counter-clockwise [90]; or
``k``, the number of quarter turns (as ``numpy.rot90``). Giving both is an error
unless they agree.

The rotated frame keeps the input's ``uniqueId``, dtype, colour mode, attributes and
``dataTimeStamp``; its ``timeStamp`` is the time it was made, so that a distributor
in a next stage tells frames apart. Compressed input is decompressed; the output is
not compressed.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pvaccess as pva

from pvhpc.processors.ad_image import (
    AdImageProcessor,
    get_color_mode,
    get_frame_id,
    get_image,
    make_frame,
)


def quarter_turns(configDict: dict, default: int = 1) -> int:
    """The number of quarter turns (0..3) asked for by ``angle`` and/or ``k``.

    Raises ``ValueError`` for an angle that is not a multiple of 90 degrees, a
    non-integer ``k``, or an ``angle`` and a ``k`` that disagree.
    """
    k = None
    if configDict.get("k") is not None:
        value = float(configDict["k"])
        if not value.is_integer():
            raise ValueError(f"k must be an integer number of quarter turns, got {configDict['k']}")
        k = int(value) % 4
    if configDict.get("angle") is not None:
        angle = float(configDict["angle"])
        if angle % 90 != 0:
            raise ValueError(f"angle must be a multiple of 90 degrees, got {configDict['angle']}")
        from_angle = int(angle // 90) % 4
        if k is not None and k != from_angle:
            raise ValueError(f"angle {configDict['angle']} and k {configDict['k']} disagree")
        k = from_angle
    return default % 4 if k is None else k


class HpcAdImageProcessor(AdImageProcessor):
    """Rotate each frame by ``k`` quarter turns and publish the rotated frame.

    ``process`` runs in the runtime's processing thread; it raises (and the frame is
    counted as a processor error) for a frame whose pixels cannot be read.
    ``configure`` may be called from the control thread at any time: a new angle
    applies from the next frame on. Construction raises ``ValueError`` for a bad angle.
    """

    def __init__(self, configDict: dict | None = None) -> None:
        super().__init__(configDict)
        self.k = quarter_turns(self.configDict)
        self._lock = threading.Lock()
        self.resetStats()

    def configure(self, configDict: dict) -> None:
        """Apply ``angle``/``k`` from a ``configure`` command; raises ``ValueError`` if bad."""
        if "angle" in configDict or "k" in configDict:
            self.k = quarter_turns(configDict, self.k)
            self.logger.info("Rotating frames by %d degrees", 90 * self.k)

    def start(self) -> None:
        """Reset statistics; log the rotation in use."""
        self.resetStats()
        self.logger.info("Rotating frames by %d degrees", 90 * self.k)

    def process(self, pvObject: Any) -> Any:
        """Rotate one frame, publish it and return it."""
        t0 = time.perf_counter()
        k = self.k
        image = get_image(pvObject)
        rotated = np.rot90(image, k) if k else image
        frame = make_frame(
            rotated,
            get_frame_id(pvObject),
            color_mode=get_color_mode(pvObject) if image.ndim == 3 else None,
            like=pvObject,
        )
        self.updateOutputChannel(frame)
        elapsed = time.perf_counter() - t0
        with self._lock:
            self._n_rotated += 1
            self._n_bytes += rotated.nbytes
            self._processing_time += elapsed
        return frame

    def resetStats(self) -> None:
        """Zero the counters; rates restart now."""
        with self._lock:
            self._n_rotated = 0
            self._n_bytes = 0
            self._processing_time = 0.0
            self._since = time.monotonic()

    def getStats(self) -> dict:
        """``nRotated``, ``rotatedRate`` (frames/s), ``rotatedMBps``, ``meanRotationTime`` (ms), ``angle``."""
        with self._lock:
            elapsed = time.monotonic() - self._since
            n = self._n_rotated
            return {
                "nRotated": n,
                "rotatedRate": n / elapsed if elapsed > 0 else 0.0,
                "rotatedMBps": self._n_bytes / elapsed / 1e6 if elapsed > 0 else 0.0,
                "meanRotationTime": 1e3 * self._processing_time / n if n else 0.0,
                "angle": 90 * self.k,
            }

    def getStatsPvaTypes(self) -> dict:
        """PVA types of :meth:`getStats`."""
        return {
            "nRotated": pva.UINT,
            "rotatedRate": pva.DOUBLE,
            "rotatedMBps": pva.DOUBLE,
            "meanRotationTime": pva.DOUBLE,
            "angle": pva.INT,
        }
