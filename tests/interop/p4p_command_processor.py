"""A processor that counts the control commands reaching it, for the p4p control tests.

``userStats`` shows how many times ``configure`` and ``resetStats`` were called and the
last configured ``tag``; at stop() it writes every configure dict it got (in order) to
``outputFile`` (``{processorId}`` replaced), with the ids it processed.
"""

import json

import pvaccess as pva

from pvhpc import UserDataProcessor


class CommandCountingProcessor(UserDataProcessor):
    def __init__(self, configDict=None):
        super().__init__(configDict)
        self.ids = []
        self.configured = []
        self.n_resets = 0

    def process(self, pvObject):
        self.ids.append(pvObject[self.objectIdField])
        self.updateOutputChannel(pvObject)
        return pvObject

    def configure(self, configDict):
        self.configured.append(configDict)

    def resetStats(self):
        self.n_resets += 1

    def getStats(self):
        return {"nConfigures": len(self.configured), "nResets": self.n_resets}

    def getStatsPvaTypes(self):
        return {"nConfigures": pva.UINT, "nResets": pva.UINT}

    def stop(self):
        path = self.configDict.get("outputFile")
        if path:
            path = path.replace("{processorId}", str(self.processorId))
            with open(path, "w") as f:
                json.dump({"ids": self.ids, "configured": self.configured, "stopped": True}, f)
