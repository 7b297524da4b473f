"""A passthrough that writes down every id it processes (a test fixture).

Written against the reference's user API only, so it runs in the reference's own
collector as well as in pvhpc's. Each id processed is appended to ``outputFile``
(``{processorId}`` replaced) as one line, flushed at once, so the file is complete
whatever way the process ends; the object is republished unchanged.
"""

import pvaccess as pva
from pvapy.hpc.adImageProcessor import AdImageProcessor


class IdRecorderProcessor(AdImageProcessor):
    def __init__(self, configDict={}):  # noqa: B006 - the signature of PvaPy's processors
        AdImageProcessor.__init__(self, configDict)
        self.outputFile = configDict["outputFile"]
        self.file = None
        self.nRecorded = 0

    def start(self):
        path = self.outputFile.replace("{processorId}", str(self.processorId))
        self.file = open(path, "a", buffering=1)

    def process(self, pvObject):
        if self.file is None:
            self.start()
        self.file.write(f"{pvObject['uniqueId']}\n")
        self.nRecorded += 1
        self.updateOutputChannel(pvObject)
        return pvObject

    def stop(self):
        if self.file is not None:
            self.file.close()
            self.file = None

    def getStats(self):
        return {"nRecorded": self.nRecorded}

    def getStatsPvaTypes(self):
        return {"nRecorded": pva.UINT}
