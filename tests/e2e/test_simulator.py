"""The frame simulator as users run it: ``python -m pvhpc sim`` on loopback."""

from __future__ import annotations

import itertools
import json
import re
import signal
import threading

import numpy as np
import pvaccess as pva
import pytest

from harness import Recorder, sim_frames_sent, wait_for, wait_for_channel
from pvhpc.processors.ad_image import get_color_mode, get_image

pytestmark = pytest.mark.e2e

FINAL = re.compile(r"done, sent (\d+) frames in ([\d.]+) s, ([\d.]+) fps")


def start_recording(recorder: Recorder, procs, what: str) -> None:
    """Wait until ``recorder`` holds the channel's initial value (frame 0)."""
    wait_for(lambda: recorder.values, 10, f"the initial value of {what}", procs=procs)


def final_report(proc) -> tuple[int, float, float]:
    match = FINAL.search(proc.output())
    assert match, proc.output()
    return int(match.group(1)), float(match.group(2)), float(match.group(3))


def _stamp(pv, field: str = "timeStamp") -> tuple[int, int]:
    ts = pv[field]
    return ts["secondsPastEpoch"], ts["nanoseconds"]


class FrameRecorder:
    """Monitor a frame channel and keep what each update held.

    The monitor callback may be handed the same object every time, so the
    fields are copied out in the callback.
    """

    def __init__(self, channel: str, request: str = "field()", images: bool = True):
        self.frames: list[dict] = []
        self.images = images
        self._lock = threading.Lock()
        self.channel = pva.Channel(channel)
        self.channel.monitor(self._on_update, request)

    @property
    def values(self) -> list[int]:
        with self._lock:
            return [f["uniqueId"] for f in self.frames]

    def _on_update(self, pv):
        frame = {"uniqueId": pv["uniqueId"], "timeStamp": _stamp(pv)}
        if self.images:
            frame["dataTimeStamp"] = _stamp(pv, "dataTimeStamp")
            frame["image"] = np.array(get_image(pv), copy=True)
            frame["dims"] = [d["size"] for d in pv["dimension"]]
            frame["color_mode"] = get_color_mode(pv)
        with self._lock:
            self.frames.append(frame)

    def close(self):
        self.channel.stopMonitor()


class MetadataRecorder:
    """Monitor a metadata channel (PVA or CA); keep (value, seconds, nanoseconds)."""

    def __init__(self, name: str, provider=pva.PVA):
        self.values: list[tuple[float, int, int]] = []
        self.fields: list[str] = []
        self._lock = threading.Lock()
        self.channel = pva.Channel(name, provider)
        self.channel.monitor(self._on_update, "field(value,timeStamp)")

    def _on_update(self, pv):
        with self._lock:
            self.fields = sorted(pv.getStructureDict())
            self.values.append((pv["value"], *_stamp(pv)))

    def close(self):
        self.channel.stopMonitor()


def test_frames_from_npy_file_arrive_in_order_and_intact(procs, prefix, tmp_path):
    frames = np.random.default_rng(5).integers(0, 60000, (4, 6, 8), dtype=np.uint16)
    np.save(tmp_path / "frames.npy", frames)
    channel = f"{prefix}:image"
    sim = procs.start(
        "sim", "-cn", channel, "-if", tmp_path / "frames.npy", "-fps", 40, "-rt", 0.5,
        "-std", 2, "-shd", 0.2, "-rp", 10,
    )  # fmt: skip
    wait_for_channel(channel)
    recorder = FrameRecorder(channel)
    start_recording(recorder, procs, channel)
    assert sim.wait(30) == 0
    recorder.close()

    assert recorder.values == list(range(0, 21))
    for frame in recorder.frames:
        uid = frame["uniqueId"]
        np.testing.assert_array_equal(frame["image"], frames[(uid - 1) % 4 if uid else 0])
        assert frame["dims"] == [8, 6]
        assert frame["color_mode"] == 0
        assert frame["dataTimeStamp"] == frame["timeStamp"]
    stamps = [f["timeStamp"] for f in recorder.frames]
    assert stamps == sorted(set(stamps)), "every frame needs a fresh, later timeStamp"

    n, _, _ = final_report(sim)  # the achieved rate is measured in benchmarks/ (sim)
    assert n == 20 == recorder.values[-1]
    assert len(re.findall(r"sent \d+ frames", sim.output())) == 3  # at 10, 20, final
    # Even pacing is the default, and the lines say so.
    assert "at 40 fps (pacing even) for 0.5 s" in sim.output()
    assert re.search(r": sent 10 frames in .*pacing even\), gap p50 .*, last 10 at [\d.]+ fps\n",
                     sim.output())  # fmt: skip
    assert re.search(
        r"done, sent 20 frames .*\(requested 40, pacing even\), gap p50 ", sim.output()
    )


def test_metadata_channels_carry_the_frame_timestamps(procs, prefix):
    channel = f"{prefix}:image"
    pva_name, ca_name, bare_name = f"{prefix}:pm", f"{prefix}:cm", f"{prefix}:bm"
    sim = procs.start(
        "sim", "-cn", channel, "-nx", 16, "-ny", 8, "-fps", 20, "-rt", 0.5, "-std", 2.5,
        "-shd", 0.5, "-mpv", f"pva://{pva_name},ca://{ca_name},{bare_name}",
    )  # fmt: skip
    wait_for_channel(channel)
    frames = FrameRecorder(channel, "field(uniqueId,timeStamp)", images=False)
    metadata = {
        pva_name: MetadataRecorder(pva_name),
        ca_name: MetadataRecorder(ca_name, pva.CA),
        bare_name: MetadataRecorder(bare_name, pva.CA),
    }
    start_recording(frames, procs, channel)
    for name, recorder in metadata.items():
        start_recording(recorder, procs, name)
    assert sim.wait(30) == 0
    for recorder in (frames, *metadata.values()):
        recorder.close()

    frame_times = {f["uniqueId"]: f["timeStamp"] for f in frames.frames if f["uniqueId"]}
    assert sorted(frame_times) == list(range(1, 11))
    for name, recorder in metadata.items():
        times = {int(v): (sec, ns) for v, sec, ns in recorder.values[1:]}
        assert times == frame_times, name
    assert metadata[pva_name].fields == ["timeStamp", "value"]


def test_sigint_stops_an_endless_run_with_a_final_report(procs, prefix):
    channel = f"{prefix}:image"
    sim = procs.start("sim", "-cn", channel, "-nx", 32, "-ny", 32, "-fps", 200, "-rt", 0,
                      "-std", 0, "-shd", 60, "-dc", "-rf", "json")  # fmt: skip
    wait_for_channel(channel)
    recorder = Recorder(channel, request="record[queueSize=1000]field(uniqueId)")
    wait_for(lambda: len(recorder.values) > 20, 10, "frames to flow", procs=procs)
    sim.signal(signal.SIGINT)
    assert sim.wait(10) == 0
    recorder.close()
    n = sim_frames_sent(sim)
    # Every frame from the subscription on arrived, in order, up to the last one the
    # report counts: the count is exact.
    assert recorder.values == list(range(recorder.values[0], n + 1))
    assert n > 20


def test_sigterm_during_start_delay(procs, prefix):
    channel = f"{prefix}:image"
    sim = procs.start("sim", "-cn", channel, "-nx", 8, "-ny", 8, "-std", 60, "-rf", "json")
    first = wait_for_channel(channel)
    assert first["uniqueId"] == 0
    sim.signal(signal.SIGTERM)
    assert sim.wait(10) == 0
    assert sim_frames_sent(sim) == 0


def test_rate_is_kept_at_one_khz_with_a_queued_monitor(procs, prefix):
    channel = f"{prefix}:image"
    sim = procs.start("sim", "-cn", channel, "-nx", 128, "-ny", 128, "-fps", 1000, "-rt", 1.5,
                      "-std", 2, "-shd", 0.5, "-nf", 50, "-rf", "json")  # fmt: skip
    wait_for_channel(channel)
    recorder = Recorder(channel, request="record[queueSize=1000]field(uniqueId)")
    start_recording(recorder, procs, channel)
    assert sim.wait(30) == 0
    recorder.close()
    n = sim_frames_sent(sim)  # the achieved rate is measured in benchmarks/ (sim)
    assert n == 1500
    assert recorder.values == list(range(0, 1501))


def json_reports(proc) -> list[dict]:
    """Every output line as a JSON object (the process logs to a file, so its output
    is its stdout only, and all of it must parse)."""
    lines = [line for line in proc.output().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("pacing", ["even", "burst"])
def test_both_pacings_send_every_frame_in_order_with_json_reports(procs, prefix, tmp_path, pacing):
    # 5 kHz: even pacing sends one frame per deadline, burst pacing every due frame
    # once per millisecond. Either way every frame must arrive, in order, each with
    # a timestamp later than the one before it (the distributor tells updates
    # apart by timestamp), and the reports must say which pacing it was.
    channel = f"{prefix}:image"
    sim = procs.start("sim", "-cn", channel, "-nx", 64, "-ny", 64, "-fps", 5000, "-rt", 0.8,
                      "-std", 2, "-shd", 0.5, "-nf", 10, "-rp", 1000, "-pm", pacing,
                      "-rf", "json", "-lf", tmp_path / "sim.log")  # fmt: skip
    wait_for_channel(channel)
    recorder = FrameRecorder(channel, "record[queueSize=5000]field(uniqueId,timeStamp)", False)
    start_recording(recorder, procs, channel)
    assert sim.wait(30) == 0
    recorder.close()

    start, *reports = json_reports(sim)
    assert start["event"] == "serving" and start["channel"] == channel
    assert (start["mode"], start["requestedRate"], start["nDistinct"]) == (pacing, 5000, 10)
    final = reports[-1]
    assert final["final"] is True and all(r["final"] is False for r in reports[:-1])
    # 4000 frames are due; a machine too busy to keep up sends fewer, never more.
    n = final["nSent"]
    assert 1000 <= n <= 4000
    assert recorder.values == list(range(0, n + 1))
    stamps = [f["timeStamp"] for f in recorder.frames]
    assert all(a < b for a, b in itertools.pairwise(stamps))
    periodic = reports[:-1]
    assert [r["nSent"] for r in periodic] == list(range(1000, n + 1, 1000))
    assert all(r["nRecent"] == 1000 and r["recentRate"] > 0 for r in periodic)
    for r in reports:
        assert r["event"] == "report" and r["channel"] == channel and r["mode"] == pacing
        assert r["requestedRate"] == 5000 and r["nRestarts"] == 0
        assert r["elapsed"] > 0 and r["rate"] > 0 and r["cpu"] > 0 and r["maxLag"] >= 0
        assert 0 < r["gapP50"] <= r["gapP99"] < r["elapsed"]
    assert final["rate"] == pytest.approx(n / final["elapsed"])
    if pacing == "even":
        # Never ahead of the schedule: frame k (from 1) goes out at or after its
        # deadline, (k - 1) periods after frame 1's, which went out at most maxLag
        # late. Lateness (a slow machine) cannot make this fail; 1 ms covers the
        # wall clock (the timestamps) drifting from the monotonic one over the run.
        first = stamps[1][0] + 1e-9 * stamps[1][1]
        for k, (sec, ns) in enumerate(stamps[1:], start=1):
            assert sec + 1e-9 * ns - first >= (k - 1) / 5000 - final["maxLag"] - 1e-3, k


def test_text_reports_name_the_pacing_and_keep_their_wording(procs, prefix):
    # People read these lines (programs read --report-format json).
    channel = f"{prefix}:image"
    sim = procs.start("sim", "-cn", channel, "-nx", 16, "-ny", 16, "-fps", 2000, "-rt", 0.3,
                      "-std", 1, "-shd", 0, "-pm", "burst")  # fmt: skip
    wait_for_channel(channel)
    recorder = Recorder(channel, request="record[queueSize=1000]field(uniqueId)")
    start_recording(recorder, procs, channel)
    assert sim.wait(30) == 0
    recorder.close()
    out = sim.output()
    assert re.search(rf"^{channel}: serving \d+ distinct 16x16 uint8 frames \(Mono\) at 2000 fps "
                     r"\(pacing burst\) for 0.3 s", out, re.M), out  # fmt: skip
    final = re.search(
        rf"^{channel}: done, sent (\d+) frames in [\d.]+ s, [\d.]+ fps \(requested 2000, "
        r"pacing burst\), gap p50 ([\d.]+) ms p99 ([\d.]+) ms, cpu \d+%, max lag [\d.]+ ms$",
        out,
        re.M,
    )
    assert final, out
    n = int(final.group(1))
    assert 0 < n <= 600
    assert recorder.values == list(range(0, n + 1))
    assert 0 < float(final.group(2)) <= float(final.group(3))


def test_rgb_frames_and_datatype(procs, prefix):
    channel = f"{prefix}:image"
    sim = procs.start("sim", "-cn", channel, "-nx", 10, "-ny", 6, "-dt", "float32", "-cm", 4,
                      "-mn", -1, "-mx", 1, "-fps", 20, "-rt", 0.2, "-std", 2, "-shd", 0)  # fmt: skip
    wait_for_channel(channel)
    recorder = FrameRecorder(channel)
    start_recording(recorder, procs, channel)
    assert sim.wait(30) == 0
    recorder.close()
    assert recorder.values == [0, 1, 2, 3, 4]
    frame = recorder.frames[-1]
    assert frame["dims"] == [10, 6, 3]
    assert frame["color_mode"] == 4
    image = frame["image"]
    assert image.shape == (6, 10, 3) and image.dtype == np.float32
    assert -1 <= image.min() and image.max() <= 1


def test_python_api_run_and_stop_from_another_thread(prefix):
    from pvhpc.simulator import Simulator, SimulatorConfig

    channel = f"{prefix}:image"
    lines: list[str] = []
    sim = Simulator(
        SimulatorConfig(channel_name=channel, nx=8, ny=4, frame_rate=100, runtime=0,
                        n_frames=3, start_delay=0, shutdown_delay=30),
        report=lines.append,
    )  # fmt: skip
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(stats=sim.run()))
    thread.start()
    try:
        wait_for(lambda: sim.running, 10, "the simulator to start")

        def id_past_ten():
            uid = wait_for_channel(channel)["uniqueId"]
            return uid if uid > 10 else None

        seen = wait_for(id_past_ten, 10, "frames")
    finally:
        sim.stop()
        thread.join(5)
    assert not thread.is_alive()
    stats = result["stats"]
    assert stats.n_sent >= seen > 10  # the rate is measured in benchmarks/ (sim)
    assert lines[-1].startswith(f"{channel}: done, sent {stats.n_sent} frames")
