"""A metadata associator written the way a PvaPy user writes one (a test fixture).

The runtime fills ``self.metadataQueueMap`` (metadata channel name -> PvObjectQueue of
``{value, timeStamp}`` objects). Every frame gets, for each channel, the value whose
timestamp is the frame's within ``timestampTolerance`` seconds, as an NTAttribute named
after the channel (with the value's own timestamp); older values are discarded and
counted. A value that has not arrived yet is waited for up to ``waitTime`` seconds.
The frame is then published with its attributes. Only the reference's user-facing
classes are used.
"""

import time

import pvaccess as pva
from pvapy.hpc.adImageProcessor import AdImageProcessor
from pvapy.utility.floatWithUnits import FloatWithUnits


def timeStampSeconds(timeStamp):
    return timeStamp["secondsPastEpoch"] + timeStamp["nanoseconds"] * 1e-9


class MetadataAssociatorProcessor(AdImageProcessor):
    def __init__(self, configDict={}):  # noqa: B006 - the signature of PvaPy's processors
        AdImageProcessor.__init__(self, configDict)
        self.timestampTolerance = float(configDict.get("timestampTolerance", 0.0001))
        self.waitTime = float(configDict.get("waitTime", 1.0))
        self.pending = {}
        self.resetStats()

    def configure(self, configDict):
        self.timestampTolerance = float(
            configDict.get("timestampTolerance", self.timestampTolerance)
        )
        self.waitTime = float(configDict.get("waitTime", self.waitTime))

    def nextMetadata(self, channel, metadataQueue):
        """The oldest value of ``channel`` not used yet, waiting for one if none is."""
        if channel not in self.pending:
            try:
                pv = metadataQueue.get(self.waitTime)
            except pva.QueueEmpty:
                return None
            self.pending[channel] = (timeStampSeconds(pv["timeStamp"]), pv["value"], pv)
        return self.pending[channel]

    def associate(self, channel, metadataQueue, frameTime):
        while True:
            item = self.nextMetadata(channel, metadataQueue)
            if item is None:
                return None
            metadataTime, value, pv = item
            if metadataTime < frameTime - self.timestampTolerance:
                del self.pending[channel]
                self.nMetadataDiscarded += 1
                continue
            if metadataTime <= frameTime + self.timestampTolerance:
                del self.pending[channel]
                return (value, pv["timeStamp"])
            return None  # a later frame's value: kept for it

    def process(self, pvObject):
        t0 = time.time()
        frameTime = timeStampSeconds(pvObject["timeStamp"])
        attributes = list(pvObject["attribute"])
        nMatched = 0
        for channel, metadataQueue in self.metadataQueueMap.items():
            found = self.associate(channel, metadataQueue, frameTime)
            if found is None:
                self.nMetadataMissing += 1
                continue
            value, timeStamp = found
            attribute = pva.NtAttribute(channel, pva.PvDouble(value))
            attribute["timeStamp"] = timeStamp
            attribute["descriptor"] = "metadata"
            attribute["source"] = channel
            attributes.append(attribute)
            nMatched += 1
        pvObject["attribute"] = attributes
        self.nMetadataMatched += nMatched
        self.nFramesProcessed += 1
        if nMatched == len(self.metadataQueueMap):
            self.nFramesWithFullMetadata += 1
        self.updateOutputChannel(pvObject)
        self.processingTime += time.time() - t0
        return pvObject

    def resetStats(self):
        self.nFramesProcessed = 0
        self.nFramesWithFullMetadata = 0
        self.nMetadataMatched = 0
        self.nMetadataDiscarded = 0
        self.nMetadataMissing = 0
        self.processingTime = 0

    def getStats(self):
        return {
            "nFramesProcessed": self.nFramesProcessed,
            "nFramesWithFullMetadata": self.nFramesWithFullMetadata,
            "nMetadataMatched": self.nMetadataMatched,
            "nMetadataDiscarded": self.nMetadataDiscarded,
            "nMetadataMissing": self.nMetadataMissing,
            "processingTime": FloatWithUnits(self.processingTime, "s"),
        }

    def getStatsPvaTypes(self):
        return {
            "nFramesProcessed": pva.UINT,
            "nFramesWithFullMetadata": pva.UINT,
            "nMetadataMatched": pva.UINT,
            "nMetadataDiscarded": pva.UINT,
            "nMetadataMissing": pva.UINT,
            "processingTime": pva.DOUBLE,
        }
