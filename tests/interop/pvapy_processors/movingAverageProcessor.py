"""A moving average written the way a PvaPy user writes one (a test fixture).

For every frame, publishes the average of the last ``nFrames`` frames (fewer at the
start) as a float64 NTNDArray with the frame's ``uniqueId`` and the extra fields
``nAveraged`` (frames in the average) and ``firstFrameId`` (the oldest of them).
Sums are kept as int64, so the average is the exactly rounded quotient of an exact
sum. Only the reference's user-facing classes are used.
"""

import collections
import time

import numpy as np
import pvaccess as pva
from pvapy.hpc.adImageProcessor import AdImageProcessor
from pvapy.utility.adImageUtility import AdImageUtility
from pvapy.utility.floatWithUnits import FloatWithUnits


class MovingAverageProcessor(AdImageProcessor):
    def __init__(self, configDict={}):  # noqa: B006 - the signature of PvaPy's processors
        AdImageProcessor.__init__(self, configDict)
        self.nFrames = int(configDict.get("nFrames", 4))
        self.window = collections.deque()
        self.total = None
        self.resetStats()

    def configure(self, configDict):
        if "nFrames" in configDict:
            self.nFrames = int(configDict["nFrames"])
            self.window.clear()
            self.total = None

    def process(self, pvObject):
        t0 = time.time()
        (frameId, image, nx, ny, nz, colorMode, fieldKey) = self.reshapeNtNdArray(pvObject)
        image = image.astype(np.int64)
        if self.total is None or self.total.shape != image.shape:
            self.window.clear()
            self.total = np.zeros(image.shape, dtype=np.int64)
        self.window.append((frameId, image))
        self.total += image
        while len(self.window) > self.nFrames:
            self.total -= self.window.popleft()[1]
        average = self.total / len(self.window)
        extra = pva.PvObject(
            {"nAveraged": pva.UINT, "firstFrameId": pva.INT},
            {"nAveraged": len(self.window), "firstFrameId": self.window[0][0]},
        )
        out = AdImageUtility.generateNtNdArray2D(frameId, average, extraFieldsPvObject=extra)
        self.updateOutputChannel(out)
        self.nFramesAveraged += 1
        self.processingTime += time.time() - t0
        return out

    def resetStats(self):
        self.nFramesAveraged = 0
        self.processingTime = 0

    def getStats(self):
        return {
            "nFramesAveraged": self.nFramesAveraged,
            "windowSize": len(self.window),
            "processingTime": FloatWithUnits(self.processingTime, "s"),
        }

    def getStatsPvaTypes(self):
        return {"nFramesAveraged": pva.UINT, "windowSize": pva.UINT, "processingTime": pva.DOUBLE}

    def getOutputPvObjectType(self, pvObject):
        return pva.NtNdArray({"nAveraged": pva.UINT, "firstFrameId": pva.INT})
