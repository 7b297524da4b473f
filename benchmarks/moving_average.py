"""The work benchmark's processor for pvhpc: a moving average of the last ``nFrames``
frames, the same computation as the reference's processor file
(``tests/interop/pvapy_processors/movingAverageProcessor.py``), on pvhpc's
:class:`~pvhpc.AdImageProcessor`.

Each frame's pixels are read as a numpy view (no copy), summed as int64 and averaged
as float64; the average is published as a new NTNDArray with the frame's id and the
extra fields ``nAveraged`` and ``firstFrameId``.
"""

import collections

import numpy as np
import pvaccess as pva

from pvhpc import AdImageProcessor

EXTRA_TYPES = {"nAveraged": pva.UINT, "firstFrameId": pva.INT}


class MovingAverageProcessor(AdImageProcessor):
    def __init__(self, configDict=None):
        super().__init__(configDict or {})
        self.nFrames = int((configDict or {}).get("nFrames", 4))
        self.window = collections.deque()
        self.total = None
        self.nFramesAveraged = 0

    def process(self, pvObject):
        frame_id = self.get_frame_id(pvObject)
        image = self.get_image(pvObject).astype(np.int64)
        if self.total is None or self.total.shape != image.shape:
            self.window.clear()
            self.total = np.zeros(image.shape, dtype=np.int64)
        self.window.append((frame_id, image))
        self.total += image
        while len(self.window) > self.nFrames:
            self.total -= self.window.popleft()[1]
        average = self.total / len(self.window)
        extra = pva.PvObject(
            EXTRA_TYPES, {"nAveraged": len(self.window), "firstFrameId": self.window[0][0]}
        )
        out = self.generateNtNdArray2D(frame_id, average, extraFieldsPvObject=extra)
        self.updateOutputChannel(out)
        self.nFramesAveraged += 1
        return out

    def resetStats(self):
        self.nFramesAveraged = 0

    def getStats(self):
        return {"nFramesAveraged": self.nFramesAveraged}

    def getStatsPvaTypes(self):
        return {"nFramesAveraged": pva.UINT}

    def getOutputPvObjectType(self, pvObject):
        return pva.NtNdArray(EXTRA_TYPES)
