"""A tile splitter written the way a PvaPy user writes one (a test fixture).

It subclasses the reference's ``AdImageProcessor`` and uses its ``AdImageUtility`` and
``FloatWithUnits``, nothing from pvhpc, so that running it in a pvhpc consumer shows a
user's file works unchanged. ``nx``/``ny`` are the tile size; every frame is cut into
(frame nx / nx) x (frame ny / ny) tiles, row by row, each published as an NTNDArray with
the frame's ``uniqueId`` and the extra fields ``tileIndexX``, ``tileIndexY``.
"""

import time

import numpy as np
import pvaccess as pva
from pvapy.hpc.adImageProcessor import AdImageProcessor
from pvapy.utility.adImageUtility import AdImageUtility
from pvapy.utility.floatWithUnits import FloatWithUnits


class SplitTilesProcessor(AdImageProcessor):
    def __init__(self, configDict={}):  # noqa: B006 - the signature of PvaPy's processors
        AdImageProcessor.__init__(self, configDict)
        self.tileNx = int(configDict.get("nx", 8))
        self.tileNy = int(configDict.get("ny", 8))
        self.resetStats()

    def configure(self, configDict):
        self.tileNx = int(configDict.get("nx", self.tileNx))
        self.tileNy = int(configDict.get("ny", self.tileNy))

    def process(self, pvObject):
        t0 = time.time()
        (frameId, image, nx, ny, nz, colorMode, fieldKey) = self.reshapeNtNdArray(pvObject)
        if nx % self.tileNx or ny % self.tileNy:
            self.nFramesRejected += 1
            return pvObject
        for iy in range(ny // self.tileNy):
            for ix in range(nx // self.tileNx):
                tile = np.ascontiguousarray(
                    image[
                        iy * self.tileNy : (iy + 1) * self.tileNy,
                        ix * self.tileNx : (ix + 1) * self.tileNx,
                    ]
                )
                extra = pva.PvObject(
                    {"tileIndexX": pva.INT, "tileIndexY": pva.INT},
                    {"tileIndexX": ix, "tileIndexY": iy},
                )
                out = AdImageUtility.generateNtNdArray2D(frameId, tile, extraFieldsPvObject=extra)
                self.updateOutputChannel(out)
                self.nTilesPublished += 1
        self.nFramesProcessed += 1
        self.processingTime += time.time() - t0
        return pvObject

    def resetStats(self):
        self.nFramesProcessed = 0
        self.nFramesRejected = 0
        self.nTilesPublished = 0
        self.processingTime = 0

    def getStats(self):
        rate = 0
        if self.processingTime > 0:
            rate = self.nFramesProcessed / self.processingTime
        return {
            "nFramesProcessed": self.nFramesProcessed,
            "nFramesRejected": self.nFramesRejected,
            "nTilesPublished": self.nTilesPublished,
            "processingTime": FloatWithUnits(self.processingTime, "s"),
            "processingRate": FloatWithUnits(rate, "fps"),
        }

    def getStatsPvaTypes(self):
        return {
            "nFramesProcessed": pva.UINT,
            "nFramesRejected": pva.UINT,
            "nTilesPublished": pva.UINT,
            "processingTime": pva.DOUBLE,
            "processingRate": pva.DOUBLE,
        }

    def getOutputPvObjectType(self, pvObject):
        return pva.NtNdArray({"tileIndexX": pva.INT, "tileIndexY": pva.INT})
