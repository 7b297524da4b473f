"""The area-detector frame simulator behind ``pvapy-ad-sim-server`` (SPEC §3.4).

:class:`Simulator` serves NTNDArray frames on one PVA channel at a steady rate, with
optional PVA/CA metadata channels. The package's modules, one concern each:
:mod:`.config` (the settings and what a run reports), :mod:`.frames` (frames
generated or read from ``.npy``/HDF5, built before the first one goes out),
:mod:`.metadata` (metadata channels), :mod:`.pacing` (when each frame goes out, even
or in bursts, and the gap statistics) and :mod:`.server` (the channels, the reports
and the per-frame stamping).
"""

from .config import (
    COLOR_MODES,
    DATATYPES,
    PACING_MODES,
    REPORT_FORMATS,
    SimulatorConfig,
    SimulatorStats,
)
from .frames import build_frame, frame_shape, generate_frames, load_frames, value_range
from .metadata import MetadataPv, parse_metadata_pvs
from .pacing import MAX_LAG
from .server import Simulator

__all__ = [
    "COLOR_MODES",
    "DATATYPES",
    "MAX_LAG",
    "MetadataPv",
    "PACING_MODES",
    "REPORT_FORMATS",
    "Simulator",
    "SimulatorConfig",
    "SimulatorStats",
    "build_frame",
    "frame_shape",
    "generate_frames",
    "load_frames",
    "parse_metadata_pvs",
    "value_range",
]
