"""A test processor that records what it saw, for end-to-end tests.

Config keys: ``outputFile`` (``{processorId}`` is replaced), ``delay`` (seconds to
spend per object, to make a slow consumer), ``failOnIds`` (ids on which process()
raises). At stop() it writes JSON: ids processed, configure calls, stop flag.
"""

import json
import time

import pvaccess as pva

from pvhpc import UserDataProcessor


class RecordingProcessor(UserDataProcessor):
    def __init__(self, configDict=None):
        super().__init__(configDict)
        self.ids = []
        self.configured = []
        self.delay = float(self.configDict.get("delay", 0))
        self.fail_on = set(self.configDict.get("failOnIds", []))
        self.x = 0

    def process(self, pvObject):
        oid = pvObject[self.objectIdField]
        if oid in self.fail_on:
            raise RuntimeError(f"asked to fail on {oid}")
        self.ids.append(oid)
        if self.delay:
            end = time.perf_counter() + self.delay
            while time.perf_counter() < end:
                pass
        self.updateOutputChannel(pvObject)
        return pvObject

    def configure(self, configDict):
        self.configured.append(configDict)
        if "x" in configDict:
            self.x = int(configDict["x"])

    def resetStats(self):
        self.ids_at_reset = len(self.ids)

    def getStats(self):
        return {"nSeen": len(self.ids), "x": self.x}

    def getStatsPvaTypes(self):
        return {"nSeen": pva.UINT, "x": pva.INT}

    def stop(self):
        path = self.configDict.get("outputFile")
        if path:
            path = path.replace("{processorId}", str(self.processorId))
            with open(path, "w") as f:
                json.dump({"ids": self.ids, "configured": self.configured, "stopped": True}, f)
