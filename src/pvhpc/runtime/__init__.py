"""The consumer and collector runtimes: one stage process, or several supervised ones.

:class:`~pvhpc.runtime.stage.Stage` is what both share (processor, server,
statistics, control commands, run loop); :class:`~pvhpc.runtime.consumer.Consumer`
and :class:`~pvhpc.runtime.collector.Collector` add their receive paths;
:mod:`~pvhpc.runtime.launcher` runs one in this process or several as children.
"""
