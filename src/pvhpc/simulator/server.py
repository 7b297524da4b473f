"""The simulator's server: the frame channel and metadata records on a PvaServer (and a
CA IOC), the start and final reports, and the per-frame stamping that
:func:`~pvhpc.simulator.pacing.pace` calls at each deadline.

Publishing a frame only stamps ``uniqueId``, ``timeStamp`` and ``dataTimeStamp`` on a
prepared object and hands it to :meth:`pvaccess.PvaServer.update` (a few
microseconds of Python; with a monitor connected, pvAccess spends about 20 more in
``update`` posting the frame to it, and its sender thread as much again).

Before the first frame the channel holds *frame 0*: the first prepared image with
``uniqueId`` 0. A monitor's first update is always the channel's current value, so
a consumer that skips one initial update (``--skip-initial-updates 1``, the default)
drops exactly that value, whether it connected before the start (frame 0) or in
the middle of the stream (the frame current at that moment).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable

import pvaccess as pva

from .. import codecs
from ..errors import UsageError
from ..record.reader import is_recording
from .config import COLOR_MODES, SimulatorConfig, SimulatorStats, check_codec, validate
from .frames import HDF5_SUFFIXES, prepare_frames
from .metadata import CaMetadata, MetadataPv, metadata_object, parse_metadata_pvs
from .pacing import pace
from .replay import MetadataPlayer, Replay

__all__ = ["STOP_LINGER", "Simulator"]

logger = logging.getLogger("pvhpc.simulator")

# Seconds the channel stays up after a stop, for frames already published to arrive.
STOP_LINGER = 1.0


class Simulator:
    """Serve prepared NTNDArray frames on a PVA channel at a steady rate.

    Contract:

    - ``Simulator(config)`` validates the configuration and prepares every frame
      (it may take a while for large inputs); it raises :class:`UsageError` for a
      user mistake (bad datatype, missing file, ...). Nothing is served yet.
    - :meth:`run` blocks the calling thread: it creates the channel (holding frame 0),
      waits ``start_delay``, publishes frames 1, 2, ... against absolute deadlines
      until ``runtime`` has passed or :meth:`stop` is called, waits
      ``shutdown_delay`` (unless stopped), stops the server and returns the
      :class:`SimulatorStats`. Progress lines go to ``report`` every
      ``report_period`` frames and once at the end. Call it once.
    - :meth:`stop` may be called from any thread or a signal handler; it returns
      at once and :meth:`run` returns within one frame period (or 50 ms).
    - ``server``: an existing :class:`pvaccess.PvaServer` to add the records to
      (then it is not stopped at the end); by default the simulator owns one.
    """

    def __init__(
        self,
        config: SimulatorConfig,
        report: Callable[[str], None] | None = None,
        server: pva.PvaServer | None = None,
    ):
        self.config = config
        self.report = report or logger.info
        self._own_server = server is None
        self._server = server
        self._stop_event = threading.Event()
        self._quit_event = threading.Event()
        self._running = threading.Event()
        self._player: MetadataPlayer | None = None
        self.stats = SimulatorStats(config.channel_name, config.frame_rate, config.pacing)
        self.metadata = parse_metadata_pvs(config.metadata_pvs)
        validate(config, [m.name for m in self.metadata])
        check_codec(config.compression_codec)
        #: The recording replayed (``-if`` a file of ``pvhpc record``), or None.
        self.replay: Replay | None = None
        if _replays(config):
            self.replay = self._open_replay()
            self.frames: list[pva.NtNdArray] = [self.replay.first()]
        else:
            if config.input_file and not os.path.isfile(config.input_file):
                raise UsageError(
                    f"--input-file: {config.input_file!r} does not exist or is not a file"
                )
            for option, given in (
                ("--timing original", config.timing == "original"),
                ("--ids", config.ids is not None),
            ):
                if given:
                    what = config.input_file or config.input_directory or "generated frames"
                    raise UsageError(
                        f"{option}: {what!r} holds no recorded timing and ids (only a file "
                        "written by pvhpc record does)"
                    )
            try:
                self.frames = prepare_frames(config)
            except codecs.CodecError as exc:  # e.g. jpeg of an input that is not uint8
                raise UsageError(f"--compression-codec: {exc}") from None

    def _open_replay(self) -> Replay:
        c = self.config
        if self.metadata:
            raise UsageError(
                "--metadata-pv: a recording replays the metadata channels it holds; "
                "leave out --metadata-pv"
            )
        if c.compression_codec:
            raise UsageError(
                "--compression-codec: a recording is served with the codec it was recorded with"
            )
        replay = Replay(c)
        self.metadata = [MetadataPv(name, protocol) for name, protocol in _channels(replay)]
        validate(c, [m.name for m in self.metadata])
        if replay.original:
            self.stats.frame_rate = replay.nominal_rate
            self.stats.pacing = "original"
        return replay

    def stop(self) -> None:
        """Ask :meth:`run` to finish: no more frames, no shutdown delay.

        The channel stays up for :data:`STOP_LINGER` seconds more, so that the frames
        already published reach the clients; a second call ends that at once.
        """
        if self._stop_event.is_set():
            self._quit_event.set()
        self._stop_event.set()

    @property
    def running(self) -> bool:
        """True once the channel exists, until :meth:`run` has finished."""
        return self._running.is_set()

    def run(self) -> SimulatorStats:
        """Serve frames until the runtime is over or :meth:`stop` is called (blocks)."""
        c = self.config
        pva_meta = [m.name for m in self.metadata if m.protocol == "pva"]
        ca_meta = [m.name for m in self.metadata if m.protocol == "ca"]
        ca = None
        if ca_meta:
            tag = f"pvhpc:sim:{os.getpid()}"
            try:
                ca = CaMetadata(
                    ca_meta,
                    tag,
                    quiet=not logger.isEnabledFor(logging.DEBUG),
                    clocked=self.replay is None,
                    strings=_string_channels(self.replay),
                )
            except (RuntimeError, pva.PvaException) as exc:
                raise UsageError(
                    f"--metadata-pv: cannot start the CA IOC for {', '.join(ca_meta)}: {exc}"
                ) from None
        server = self._server
        if server is None:
            server = self._server = pva.PvaServer()
        # The record keeps the object it is created with and publishes changes made
        # to it, so it gets a copy: stamping frames[0] later must not post by itself.
        initial = self.frames[0].copy()
        initial.set(_stamp(0, *divmod(time.time_ns(), 1_000_000_000)))
        server.addRecord(c.channel_name, initial)
        strings = _string_channels(self.replay)
        for name in pva_meta:
            server.addRecord(name, metadata_object(pva.STRING if name in strings else pva.DOUBLE))
        self._running.set()
        try:
            self._report_start()
            if c.start_delay > 0:
                self._stop_event.wait(c.start_delay)
            if not self._stop_event.is_set():
                replay = self.replay
                if replay is None:
                    send = self._sender(server, pva_meta, ca)
                else:
                    send = self._replay_sender(replay, server, ca)
                pace(
                    send,
                    self.stats,
                    self._stop_event,
                    frame_rate=self.stats.frame_rate,
                    runtime=c.runtime,
                    pacing=c.pacing if replay is None or not replay.original else "even",
                    report_period=c.report_period,
                    report=lambda n, rate: self._report_stats(False, n, rate),
                    schedule=replay.due if replay is not None and replay.original else None,
                    n_frames=replay.n_total if replay is not None else 0,
                )
                if self._player is not None and not self._stop_event.is_set():
                    self._player.rest()
            self._report_stats(final=True)
            if c.shutdown_delay > 0 and not self._stop_event.is_set():
                self._stop_event.wait(c.shutdown_delay)
            elif self._stop_event.is_set() and self.stats.n_sent > 0:
                # Stopped mid-stream: the last frames are published but the server
                # sends them on its own threads. Removing the record now would drop
                # them on the way (a consumer then never sees the last id, and no
                # later id shows it missing).
                self._quit_event.wait(STOP_LINGER)
        finally:
            self._running.clear()
            for name in [c.channel_name, *pva_meta]:
                try:
                    server.removeRecord(name)
                except pva.PvaException:
                    pass
            if self._own_server:
                server.stop()
            if ca is not None:
                ca.stop()
            if self.replay is not None:
                self.replay.close()
        return self.stats

    def _sender(
        self, server: pva.PvaServer, pva_meta: list[str], ca: CaMetadata | None
    ) -> Callable[[int], None]:
        """``send(n)``: update the metadata channels, then publish frame ``n`` (the
        prepared frames in turn) with ``uniqueId`` n and a fresh timestamp."""
        frames = self.frames
        n_distinct = len(frames)
        channel = self.config.channel_name
        update = server.update
        time_ns = time.time_ns
        has_meta = bool(pva_meta) or ca is not None
        last_ns = 0

        def send(n: int) -> None:
            nonlocal last_ns
            if ca is not None:
                seconds, nanos = ca.tick()
            else:
                # Strictly increasing, also within a burst on a coarse clock:
                # the distributor tells updates apart by their timestamp.
                stamp_ns = time_ns()
                if stamp_ns <= last_ns:
                    stamp_ns = last_ns + 1
                last_ns = stamp_ns
                seconds, nanos = divmod(stamp_ns, 1_000_000_000)
            stamp = {"secondsPastEpoch": seconds, "nanoseconds": nanos}
            if has_meta:
                value = float(n)
                for name in pva_meta:
                    update(name, {"value": value, "timeStamp": stamp})
                if ca is not None:
                    ca.update(value)
            frame = frames[(n - 1) % n_distinct]
            frame.set({"uniqueId": n, "timeStamp": stamp, "dataTimeStamp": stamp})
            update(channel, frame)

        return send

    def _replay_sender(
        self, replay: Replay, server: pva.PvaServer, ca: CaMetadata | None
    ) -> Callable[[int], None]:
        """``send(n)``: the recorded metadata updates due, then recorded frame ``n``,
        its id and timestamps as :mod:`.replay` describes."""
        channel = self.config.channel_name
        update = server.update
        time_ns = time.time_ns
        original = replay.original
        t0_ns = 0
        last_ns = 0
        failed: set[str] = set()

        def publish(event, offset: float) -> None:
            value = event.value
            value = str(value) if isinstance(value, str) else float(value)
            if event.protocol == "ca":
                if ca is not None:
                    try:
                        ca.put(event.name, value)
                    except (pva.PvaException, TypeError, ValueError) as exc:
                        first = event.name not in failed
                        failed.add(event.name)
                        logger.log(
                            logging.WARNING if first else logging.DEBUG,
                            "CA metadata channel %s: cannot serve the recorded value %r: %s%s",
                            event.name,
                            event.value,
                            exc,
                            " (later failures of this channel are logged with -ll debug)"
                            if first
                            else "",
                        )
                return
            ns = t0_ns + int(offset * 1e9) if original and t0_ns else time_ns()
            stamp = {"secondsPastEpoch": ns // 1_000_000_000, "nanoseconds": ns % 1_000_000_000}
            update(event.name, {"value": value, "timeStamp": stamp})

        player = self._player = MetadataPlayer(replay, publish, self._stop_event)

        def send(n: int) -> None:
            nonlocal t0_ns, last_ns
            i = n - 1
            if not t0_ns:
                t0_ns = time_ns()
            stamp_ns = t0_ns + int(round(replay.due(i) * 1e9)) if original else time_ns()
            # Strictly increasing: the distributor tells updates apart by timestamp.
            if stamp_ns <= last_ns:
                stamp_ns = last_ns + 1
            last_ns = stamp_ns
            data_ns = stamp_ns - replay.data_lag_ns(i)
            player.until_frame(i)
            frame = replay.frame(i)
            frame.set(
                {
                    "uniqueId": replay.unique_id(i),
                    "timeStamp": _ns_stamp(stamp_ns),
                    "dataTimeStamp": _ns_stamp(data_ns),
                }
            )
            update(channel, frame)

        return send

    def _report_start(self) -> None:
        c = self.config
        if c.report_format == "json":
            self.report(
                json.dumps(
                    {
                        "event": "serving",
                        "channel": c.channel_name,
                        "mode": c.pacing,
                        "nDistinct": len(self.frames),
                        "nx": c.nx,
                        "ny": c.ny,
                        "datatype": c.datatype,
                        "colorMode": COLOR_MODES[c.color_mode],
                        "codec": c.compression_codec or None,
                        "requestedRate": self.stats.frame_rate,
                        "runtime": c.runtime if c.runtime > 0 else None,
                        "startDelay": c.start_delay,
                        "metadataPvs": [f"{m.protocol}://{m.name}" for m in self.metadata],
                        **self._replay_info(),
                    }
                )
            )
            return
        if self.replay is not None:
            info = self._replay_info()
            self.report(
                f"{c.channel_name}: replaying {info['nRecorded']} recorded frames of "
                f"{c.input_file} ({c.datatype}{', ' + c.compression_codec if c.compression_codec else ''}"
                f"), timing {c.timing}"
                f"{f' x{c.speed:g}' if c.timing == 'original' else f' at {c.frame_rate:g} fps'}, "
                f"{info['ids']} ids{', looping' if info['loop'] else ''}"
                f"{f', metadata {len(self.metadata)} channel(s)' if self.metadata else ''}"
                f"{f'; first frame in {c.start_delay:g} s' if c.start_delay > 0 else ''}"
            )
            return
        self.report(
            f"{c.channel_name}: serving {len(self.frames)} distinct {c.nx}x{c.ny} "
            f"{c.datatype} frames ({COLOR_MODES[c.color_mode]}"
            f"{', ' + c.compression_codec if c.compression_codec else ''}) at {c.frame_rate:g} fps"
            f" (pacing {c.pacing})"
            f"{f' for {c.runtime:g} s' if c.runtime > 0 else ''}"
            f"{f', metadata {self.config.metadata_pvs}' if self.metadata else ''}"
            f"{f'; first frame in {c.start_delay:g} s' if c.start_delay > 0 else ''}"
        )

    def _replay_info(self) -> dict:
        replay = self.replay
        if replay is None:
            return {}
        c = self.config
        return {
            "input": c.input_file,
            "timing": c.timing,
            "speed": c.speed,
            "ids": "new" if replay.new_ids else "original",
            "loop": replay.loop,
            "nRecorded": replay.n,
        }

    def _report_stats(
        self, final: bool, n_recent: int | None = None, recent_rate: float = 0.0
    ) -> None:
        stats = self.stats
        if self.config.report_format == "json":
            record = stats.as_dict(final)
            if n_recent is not None:
                record["nRecent"], record["recentRate"] = n_recent, recent_rate
            self.report(json.dumps(record))
        elif n_recent is not None:
            self.report(f"{stats.line(final)}, last {n_recent} at {recent_rate:.2f} fps")
        else:
            self.report(stats.line(final))


def _replays(config: SimulatorConfig) -> bool:
    """Whether the input is a recording to replay (an HDF5 file of pvhpc record, with
    no --hdf5-dataset naming one of its datasets to serve as plain frames)."""
    path = config.input_file
    return bool(
        path
        and not config.hdf5_dataset
        and path.lower().endswith(HDF5_SUFFIXES)
        and os.path.isfile(path)
        and is_recording(path)
    )


def _channels(replay: Replay) -> list[tuple[str, str]]:
    return [(log.name, log.protocol) for log in replay.rec.metadata]


def _string_channels(replay: Replay | None) -> set[str]:
    if replay is None:
        return set()
    return {log.name for log in replay.rec.metadata if log.values.dtype == object}


def _ns_stamp(ns: int) -> dict:
    return {"secondsPastEpoch": ns // 1_000_000_000, "nanoseconds": ns % 1_000_000_000}


def _stamp(unique_id: int, seconds: int, nanos: int) -> dict:
    stamp = {"secondsPastEpoch": seconds, "nanoseconds": nanos}
    return {"uniqueId": unique_id, "timeStamp": stamp, "dataTimeStamp": stamp}
