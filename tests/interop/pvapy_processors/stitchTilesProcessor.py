"""A tile stitcher written the way a PvaPy user writes one (a test fixture).

Runs in a collector behind :mod:`splitTilesProcessor`: tiles (NTNDArrays with the
frame's ``uniqueId`` and ``tileIndexX``/``tileIndexY``) are cached per frame id; once a
frame has all its tiles, a worker thread of the processor's own stitches them and
publishes the whole frame. ``nx``/``ny`` are the size of the whole frame; the tile size
is the size of the tiles that arrive. Only the reference's user-facing classes are used.
"""

import queue
import threading
import time

import numpy as np
import pvaccess as pva
from pvapy.hpc.adImageProcessor import AdImageProcessor
from pvapy.utility.adImageUtility import AdImageUtility
from pvapy.utility.floatWithUnits import FloatWithUnits


class StitchTilesProcessor(AdImageProcessor):
    def __init__(self, configDict={}):  # noqa: B006 - the signature of PvaPy's processors
        AdImageProcessor.__init__(self, configDict)
        self.nx = int(configDict.get("nx", 16))
        self.ny = int(configDict.get("ny", 16))
        self.lock = threading.Lock()
        self.cache = {}
        self.stitchedIds = set()
        self.work = queue.Queue()
        self.thread = None
        self.resetStats()

    def start(self):
        self.thread = threading.Thread(target=self.stitchLoop, name="stitcher", daemon=True)
        self.thread.start()

    def stop(self):
        # Every complete frame queued so far is stitched and published before we return.
        self.work.put(None)
        if self.thread is not None:
            self.thread.join(60)

    def process(self, pvObject):
        (frameId, tile, tileNx, tileNy, nz, colorMode, fieldKey) = self.reshapeNtNdArray(pvObject)
        ix = pvObject["tileIndexX"]
        iy = pvObject["tileIndexY"]
        nTiles = (self.nx // tileNx) * (self.ny // tileNy)
        with self.lock:
            self.nTilesReceived += 1
            if frameId in self.stitchedIds:
                self.nLateTiles += 1
                return pvObject
            tiles = self.cache.setdefault(frameId, {})
            if (ix, iy) in tiles:
                self.nDuplicateTiles += 1
            tiles[(ix, iy)] = np.array(tile)
            if len(tiles) == nTiles:
                del self.cache[frameId]
                self.stitchedIds.add(frameId)
                self.work.put((frameId, tiles))
        return pvObject

    def stitchLoop(self):
        while True:
            item = self.work.get()
            if item is None:
                return
            t0 = time.time()
            frameId, tiles = item
            image = None
            for (ix, iy), tile in tiles.items():
                if image is None:
                    image = np.zeros((self.ny, self.nx), dtype=tile.dtype)
                tileNy, tileNx = tile.shape
                image[iy * tileNy : (iy + 1) * tileNy, ix * tileNx : (ix + 1) * tileNx] = tile
            self.updateOutputChannel(AdImageUtility.generateNtNdArray2D(frameId, image))
            with self.lock:
                self.nFramesStitched += 1
                self.stitchingTime += time.time() - t0

    def resetStats(self):
        with self.lock:
            self.nTilesReceived = 0
            self.nDuplicateTiles = 0
            self.nLateTiles = 0
            self.nFramesStitched = 0
            self.stitchingTime = 0

    def getStats(self):
        with self.lock:
            return {
                "nTilesReceived": self.nTilesReceived,
                "nDuplicateTiles": self.nDuplicateTiles,
                "nLateTiles": self.nLateTiles,
                "nFramesStitched": self.nFramesStitched,
                "nFramesIncomplete": len(self.cache),
                "stitchingTime": FloatWithUnits(self.stitchingTime, "s"),
            }

    def getStatsPvaTypes(self):
        return {
            "nTilesReceived": pva.UINT,
            "nDuplicateTiles": pva.UINT,
            "nLateTiles": pva.UINT,
            "nFramesStitched": pva.UINT,
            "nFramesIncomplete": pva.UINT,
            "stitchingTime": pva.DOUBLE,
        }

    def getOutputPvObjectType(self, pvObject):
        return pva.NtNdArray()
