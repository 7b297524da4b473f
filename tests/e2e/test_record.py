"""Record at the beamline, replay at your desk: ``pvhpc record`` and the simulator's
replay, as real processes on loopback, checked on what the files hold."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import h5py
import hdf5plugin  # noqa: F401 - registers the lz4, bitshuffle and blosc filters
import numpy as np
import pytest

from harness import control, json_reports, pv_get, sim_final_report, wait_for
from p4p_peer import P4pSource
from pvhpc.ntnda import make_frame
from pvhpc.record import Recorder, Recording, RecordSettings, capture_frame

pytestmark = pytest.mark.e2e

NX, NY = 32, 24


def start_recorder(procs, channel: str, path, *extra: str, name: str = "record"):
    """Start ``pvhpc record`` with a status channel; return it once it is up."""
    status = f"{channel}:rec:status"
    proc = procs.start("record", "-ic", channel, "-o", str(path), "-sc", status, "-rf", "json",
                       "-rp", "0.25", *extra, name=name)  # fmt: skip
    wait_for(lambda: pv_get(status, timeout=2), 30, f"{name}'s status channel", procs=procs)
    return proc, status


def user_stats(status: str) -> dict:
    return pv_get(status).toDict()["userStats"]


def wait_connected(status: str, procs) -> None:
    wait_for(lambda: pv_get(status)["receiverStats"]["connected"], 30, "the recorder to connect",
             procs=procs)  # fmt: skip


def final_report(proc) -> dict:
    reports = [r for r in json_reports(proc) if r.get("final") and "consumerId" in r]
    assert reports, proc.output()[-3000:]
    return reports[-1]


def stop_recorder(proc, status: str, expected: int, procs, metadata: dict | None = None) -> dict:
    """Once the recorder holds ``expected`` frames, and as many updates of each metadata
    channel as ``metadata`` says, stop it with SIGINT; return its final report."""
    wait_for(lambda: user_stats(status)["nRecorded"] >= expected, 30,
             f"{expected} frames recorded", procs=procs)  # fmt: skip
    for name, n in (metadata or {}).items():
        key = name.replace(":", "_")
        wait_for(lambda k=key, n=n: pv_get(status).toDict()["metadataStats"][k]["nReceived"] >= n,
                 30, f"{n} updates of {name}", procs=procs)  # fmt: skip
    proc.signal(signal.SIGINT)
    assert proc.wait(30) == 0, proc.output()[-3000:]
    report = final_report(proc)
    assert "every frame accounted for" in proc.output()
    return report


def wait_ca_settled(status: str, name: str, expected: int, procs) -> int:
    """Wait until the recorder got ``expected`` updates of CA channel ``name``, or,
    if its monitor counted overruns (CA merges updates a busy client did not take in
    time; the last one always arrives), until its count has not moved for 2 s.
    Returns the overruns."""
    key, seen = name.replace(":", "_"), []

    def settled() -> bool:
        stats = pv_get(status).toDict()["metadataStats"][key]
        now, received = time.monotonic(), stats["nReceived"]
        if not seen or seen[-1][1] != received:
            seen.append((now, received))
        return received >= expected or (stats["nOverruns"] > 0 and now - seen[-1][0] > 2)

    wait_for(settled, 60, f"{expected} updates of {name}", procs=procs)
    return pv_get(status).toDict()["metadataStats"][key]["nOverruns"]


def frames_npy(tmp_path) -> tuple[str, np.ndarray]:
    frames = np.array([(np.arange(NY * NX).reshape(NY, NX) * (j + 3)) % 4000 for j in range(8)],
                      dtype=np.uint16)  # fmt: skip
    path = tmp_path / "frames.npy"
    np.save(path, frames)
    return str(path), frames


def test_record_a_bursty_stream_then_replay_it_with_its_timing(procs, prefix, tmp_path):
    npy, frames = frames_npy(tmp_path)
    m1, m2 = f"{prefix}:m1", f"{prefix}:m2"
    channel, replayed = f"{prefix}:img", f"{prefix}:replay"
    run, again = tmp_path / "run.h5", tmp_path / "replay.h5"
    # -- record: lz4 frames in bursts (burst pacing above 1 kHz), a PVA and a CA channel
    sim = procs.start("sim", "-cn", channel, "-if", npy, "-fps", "1500", "-pm", "burst",
                      "-rt", "1", "-std", "3", "-shd", "2", "-cd", "lz4",
                      "-mpv", f"pva://{m1},ca://{m2}", "-rf", "json", name="sim")  # fmt: skip
    rec, status = start_recorder(procs, channel, run, "-mc", f"pva://{m1},ca://{m2}")
    wait_connected(status, procs)
    n = int(sim_final_report(sim, 30)["nSent"])
    sim.expect_exit = True
    # each channel: its initial value, then one update per frame (CA: unless a loaded
    # machine made its monitor merge updates, which it counts as overruns)
    ca_overruns = wait_ca_settled(status, m2, n + 1, procs)
    report = stop_recorder(rec, status, n, procs, metadata={m1: n + 1})
    assert report["processorStats"]["nMissed"] == 0 and report["userStats"]["nRecorded"] == n
    with h5py.File(run) as f:
        ids = f["entry/frames/uniqueId"][()]
        assert list(ids) == list(range(1, n + 1))
        data = f["entry/data/data"]
        assert data.attrs["codec"] == "lz4" and data.shape == (n, NY, NX)
        for k in (0, 1, n // 2, n - 1):  # decoded by the HDF5 lz4 filter (hdf5plugin)
            np.testing.assert_array_equal(data[k], frames[(ids[k] - 1) % 8])
        stamps = f["entry/frames/timeStamp"][()]
    gaps = np.diff(stamps)
    assert np.all(gaps > 0)
    # Irregular (burst pacing): whatever gaps the source made, the replay below must
    # reproduce them; how bursty they came out depends on the machine's load.
    assert gaps.max() > 2 * gaps.min()
    with Recording(str(run)) as r:
        logs = {m.name: m for m in r.metadata}
        assert {logs[m1].protocol, logs[m2].protocol} == {"pva", "ca"}
        for log in logs.values():
            # The simulator sets each metadata channel to the frame's id, stamped as the frame.
            if log.protocol == "ca" and ca_overruns:
                values = [int(v) for v in log.values if v > 0]
                assert values == sorted(set(values)) and values[-1] == n, values
                np.testing.assert_allclose(
                    log.time_stamps[-len(values) :], stamps[np.array(values) - 1], atol=1e-6
                )
                continue
            assert list(log.values[-n:]) == list(range(1, n + 1))
            np.testing.assert_allclose(log.time_stamps[-n:], stamps, atol=1e-6)
        chunks = [r.chunk(k) for k in range(n)]
        recorded_meta = {name: list(log.values) for name, log in logs.items()}

    # -- replay with the recorded timing into a second recorder --------------------------
    assert sim.wait(30) == 0  # its channels gone: the replay serves them again
    sim2 = procs.start("sim", "-cn", replayed, "-if", str(run), "--timing", "original",
                       "-std", "3", "-shd", "2", "-rf", "json", name="replay")  # fmt: skip
    rec2, status2 = start_recorder(procs, replayed, again, "-mc", f"pva://{m1},ca://{m2}",
                                   name="record2")  # fmt: skip
    wait_connected(status2, procs)
    assert int(sim_final_report(sim2, 30)["nSent"]) == n
    sim2.expect_exit = True
    # PVA: every update (a server queue); CA may merge updates that come in bursts.
    stop_recorder(rec2, status2, n, procs, metadata={m1: n + 2})
    with Recording(str(again)) as r2:
        assert list(r2.ids) == list(range(1, n + 1)) and r2.codec == "lz4"
        # The bytes as recorded (nothing decompressed and compressed again).
        assert all(r2.chunk(k)[1].tobytes() == chunks[k][1].tobytes() for k in range(n))
        assert [(a.name, list(a.values)) for a in r2.attributes] == [("ColorMode", [0] * n)]
        # The replay's timestamps follow the recorded schedule, moved to now.
        np.testing.assert_allclose(np.diff(r2.time_stamps), gaps, atol=2e-6)
        logs2 = {m.name: m for m in r2.metadata}
        assert logs2[m2].protocol == "ca"
        # the recorded updates in order, after the replay record's own initial value
        assert list(logs2[m1].values[-(n + 1) :]) == recorded_meta[m1]
        ca_values = list(logs2[m2].values)
        assert ca_values == sorted(ca_values) and ca_values[-1] == n
        # PVA metadata is stamped on the frames' schedule too.
        np.testing.assert_allclose(logs2[m1].time_stamps[-n:], r2.time_stamps, atol=2e-6)
        arrived = np.diff(r2.arrivals)
    # How closely arrivals follow the recorded gaps is timing, measured by
    # benchmarks/record.py, not asserted here (a loaded machine bunches arrivals).
    error = np.abs(arrived - gaps)
    print(f"replay gap error p50 {np.median(error) * 1e3:.3f} ms, "
          f"p99 {np.percentile(error, 99) * 1e3:.3f} ms over {n - 1} gaps")  # fmt: skip


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_recording_leaves_a_complete_file(procs, prefix, tmp_path, sig):
    channel, path = f"{prefix}:img", tmp_path / "run.h5"
    procs.start("sim", "-cn", channel, "-nx", NX, "-ny", NY, "-fps", "100", "-rt", "0",
                "-std", "2", "-cd", "bslz4", name="sim")  # fmt: skip
    rec, status = start_recorder(procs, channel, path)
    wait_for(lambda: user_stats(status)["nRecorded"] >= 30, 30, "30 frames", procs=procs)
    rec.signal(sig)
    assert rec.wait(30) == 0, rec.output()[-3000:]
    report = final_report(rec)
    assert "loss check: ids" in rec.output()
    with Recording(str(path)) as r:
        assert r.n_frames == report["userStats"]["nRecorded"] >= 30
        assert list(r.ids) == list(range(r.ids[0], r.ids[0] + r.n_frames))
        assert r.image(r.n_frames - 1).shape == (NY, NX)
    with h5py.File(path) as f:
        assert f["entry/data/data"][-1].shape == (NY, NX)  # bitshuffle filter decodes


def test_flight_recorder_dumps_on_a_trigger_and_on_command(procs, prefix, tmp_path):
    channel, meta, ctl = f"{prefix}:img", f"{prefix}:shutter", f"{prefix}:rec:control"
    procs.start("sim", "-cn", channel, "-nx", NX, "-ny", NY, "-fps", "50", "-rt", "0",
                "-std", "2", "-mpv", f"pva://{meta}", name="sim")  # fmt: skip
    rec, status = start_recorder(procs, channel, tmp_path / "ring.h5", "--ring", "1",
                                 "--trigger", f"pva://{meta}>40", "-cc", ctl)  # fmt: skip
    # The metadata value is the frame id: the condition becomes true with frame 41.
    wait_for(lambda: user_stats(status)["nDumps"] >= 1, 30, "the trigger", procs=procs)
    wait_for(lambda: pv_get(status)["processorStats"]["lastObjectId"] >= 100, 30, "frame 100")
    answer = control(ctl, "dump")
    assert "writing" in answer and "of the last 1 s" in answer, answer
    wait_for(lambda: user_stats(status)["nFiles"] >= 2, 30, "the dump", procs=procs)
    rec.signal(signal.SIGINT)
    assert rec.wait(30) == 0, rec.output()[-3000:]
    first, second = tmp_path / "ring_0001.h5", tmp_path / "ring_0002.h5"
    for path, last_id in ((first, (38, 46)), (second, (100, 1000))):
        with Recording(str(path)) as r:
            ids = list(r.ids)
            assert ids == list(range(ids[0], ids[0] + len(ids)))
            assert last_id[0] <= ids[-1] <= last_id[1], ids
            # one second of a 50 fps stream, and nothing older
            assert r.arrivals[-1] - r.arrivals[0] <= 1.0 and len(ids) >= 40
            assert r.metadata and r.metadata[0].name == meta
    assert "flight recorder: 2 dump(s)" in rec.output()


def test_flight_recorder_keeps_within_its_memory_limit(procs, prefix, tmp_path):
    """--ring 5 of a 50 fps stream would be 250 frames; --ring-memory holds 10 (32×24
    uint8 frames, 768 bytes each): the ring keeps the last 10, the progress line counts
    the frames that left early, and the dump writes the last 10 and says so."""
    channel, ctl = f"{prefix}:img", f"{prefix}:rec:control"
    procs.start("sim", "-cn", channel, "-nx", NX, "-ny", NY, "-fps", "50", "-rt", "0",
                "-std", "2", name="sim")  # fmt: skip
    limit = 10 * NX * NY
    rec, status = start_recorder(procs, channel, tmp_path / "ring.h5", "--ring", "5",
                                 "--ring-memory", str(limit), "-cc", ctl)  # fmt: skip
    wait_for(lambda: user_stats(status)["nRingEvicted"] >= 40, 30, "a full ring", procs=procs)
    stats = user_stats(status)
    assert stats["ringFrames"] == 10 and stats["ringBytes"] == limit, stats
    answer = control(ctl, "dump")
    assert "writing 10 frames" in answer and "--ring-memory 7.7 kB, was reached" in answer, answer
    wait_for(lambda: user_stats(status)["nFiles"] >= 1, 30, "the dump", procs=procs)
    rec.signal(signal.SIGINT)
    assert rec.wait(30) == 0, rec.output()[-3000:]
    with Recording(str(tmp_path / "ring_0001.h5")) as r:
        ids = list(r.ids)
        assert ids == list(range(ids[0], ids[0] + 10)), ids
    assert final_report(rec)["userStats"]["nRingEvicted"] >= 40


def test_a_looped_replay_never_restarts_its_ids(procs, prefix, tmp_path):
    source = tmp_path / "short.h5"
    recorder = Recorder(RecordSettings(str(source), channel="cam"))
    for k in range(5):  # ids 5..9, 10 ms apart
        t = 1000.0 + 0.01 * k
        frame = make_frame(np.full((4, 4), k, np.uint8), 5 + k, time_stamp=t)
        recorder.add_frame(capture_frame(frame, t))
    recorder.close()
    channel, path = f"{prefix}:img", tmp_path / "loop.h5"
    procs.start("sim", "-cn", channel, "-if", source, "--timing", "original", "--loop",
                "--speed", "2", "-std", "2", name="sim")  # fmt: skip
    rec, status = start_recorder(procs, channel, path, "-mf", "12")
    assert rec.wait(30) == 0, rec.output()[-3000:]  # ends by its frame limit
    assert "frame limit of 12 reached" in rec.output()
    with Recording(str(path)) as r:
        assert list(r.ids) == list(range(5, 17))
        np.testing.assert_allclose(np.diff(r.time_stamps), 0.005, atol=2e-6)
        assert [int(r.image(k)[0, 0]) for k in range(12)] == [k % 5 for k in range(12)]


def test_a_replay_serves_recorded_ca_text_on_string_records(procs, prefix, tmp_path):
    """A CA metadata channel of text (a sample name) is served again on a stringin
    record: recorded again from the replay, the same texts, a long one cut to the 39
    characters of an EPICS string, with one warning naming the channel."""
    meta = f"{prefix}:sample"
    texts = [f"sample-{k}" for k in range(7)] + ["a name much longer than an EPICS string holds"]
    source = tmp_path / "text.h5"
    recorder = Recorder(RecordSettings(str(source), channel="cam", metadata={meta: "ca"}))
    for k, text in enumerate(texts):  # 100 ms apart: CA merges updates only under load
        t = 1000.0 + 0.1 * k
        recorder.add_metadata(meta, text, t, t)
        recorder.add_frame(capture_frame(make_frame(np.full((4, 4), k, np.uint8), k + 1,
                                                    time_stamp=t), t))  # fmt: skip
    recorder.close()
    channel, path = f"{prefix}:img", tmp_path / "again.h5"
    sim = procs.start("sim", "-cn", channel, "-if", source, "--timing", "original",
                      "-std", "3", "-rf", "json", name="sim")  # fmt: skip
    rec, status = start_recorder(procs, channel, path, "-mc", f"ca://{meta}")
    wait_connected(status, procs)
    assert int(sim_final_report(sim, 30)["nSent"]) == len(texts)
    sim.expect_exit = True
    overruns = wait_ca_settled(status, meta, len(texts) + 1, procs)  # + the initial value
    stop_recorder(rec, status, len(texts), procs)
    served = texts[:-1] + [texts[-1][:39]]
    with Recording(str(path)) as r:
        (log,) = r.metadata
        assert log.protocol == "ca"
        got = [v for v in log.values if v]  # after the record's initial, empty value
        if overruns:  # merged by CA: those that came, in order, the last among them
            assert got[-1] == served[-1] and all(v in served for v in got), got
            assert [served.index(v) for v in got] == sorted(served.index(v) for v in got)
        else:
            assert got == served, list(log.values)
    warnings = [line for line in sim.output().splitlines() if "longer than the 39" in line]
    assert len(warnings) == 1 and meta in warnings[0], sim.output()[-2000:]


def test_record_from_a_p4p_source(procs, prefix, tmp_path):
    channel, path = f"{prefix}:p4p", tmp_path / "p4p.h5"
    with P4pSource(channel) as source:
        rec, status = start_recorder(procs, channel, path)
        wait_connected(status, procs)
        source.post(1, 20)
        stop_recorder(rec, status, 20, procs)
    with Recording(str(path)) as r:
        assert list(r.ids) == list(range(1, 21))
        for k in range(20):
            np.testing.assert_array_equal(r.image(k), np.full((4, 4), k + 1, np.uint16))


@pytest.fixture
def small_disk(tmp_path):
    """A 5 MiB tmpfs of our own (needs root, as CI has)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for the full-disk test needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(disk)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_ends_the_recording_with_a_complete_file(procs, prefix, small_disk):
    channel, path = f"{prefix}:img", small_disk / "run.h5"
    procs.start("sim", "-cn", channel, "-nx", "128", "-ny", "64", "-dt", "uint16",
                "-fps", "200", "-rt", "0", "-std", "2", name="sim")  # fmt: skip
    rec, status = start_recorder(procs, channel, path)
    assert rec.wait(60) == 1, rec.output()[-3000:]
    errors = [line for line in rec.output().splitlines() if "error:" in line]
    assert len(errors) == 1 and "disk full" in errors[0], rec.output()[-3000:]
    report = final_report(rec)
    with Recording(str(path)) as r:
        assert r.n_frames == report["userStats"]["nRecorded"] > 10
        assert list(r.ids) == list(range(r.ids[0], r.ids[0] + r.n_frames))
    with h5py.File(path) as f:
        assert f["entry/data/data"][-1].shape == (64, 128)


def test_any_consumer_records_with_the_stream_recorder(procs, prefix, tmp_path):
    channel, meta, status = f"{prefix}:img", f"{prefix}:m", f"{prefix}:c:status"
    path, out = tmp_path / "c.h5", f"{prefix}:c:output"
    sim = procs.start("sim", "-cn", channel, "-nx", NX, "-ny", NY, "-fps", "50", "-rt", "1",
                      "-std", "3", "-shd", "2", "-mpv", f"pva://{meta}", "-rf", "json",
                      name="sim")  # fmt: skip
    args = json.dumps({"outputFile": str(path), "metadataChannels": f"pva://{meta}"})
    consumer = procs.start("consumer", "-ic", channel, "-mc", f"pva://{meta}", "-sqs", "100",
                           "-pc", "StreamRecorder", "-pa", args, "-sc", status, "-oc", out,
                           "-rp", "0.25", name="consumer")  # fmt: skip
    wait_for(lambda: pv_get(status)["receiverStats"]["connected"], 30, "the consumer to connect",
             procs=procs)  # fmt: skip
    n = int(sim_final_report(sim, 30)["nSent"])
    sim.expect_exit = True
    wait_for(lambda: pv_get(out)["uniqueId"] == n, 30, "the last frame passed on", procs=procs)
    wait_for(lambda: user_stats(status)["nRecorded"] == n, 30, "every frame recorded", procs=procs)
    consumer.signal(signal.SIGINT)
    assert consumer.wait(30) == 0, consumer.output()[-3000:]
    with Recording(str(path)) as r:
        assert list(r.ids) == list(range(1, n + 1))
        assert r.metadata[0].protocol == "pva" and r.metadata[0].values[-1] == n


def test_replay_into_a_consumer_set_and_a_collector(procs, prefix, tmp_path):
    """A recording (original ids 101..140, gaps of 2 and 20 ms) replayed into two
    distributing consumers and a collector, whose output is recorded again: every id,
    in order, with its pixels and attributes as recorded."""
    source = tmp_path / "beamtime.h5"
    recorder = Recorder(RecordSettings(str(source), channel="cam"))
    t, images = 1000.0, {}
    for k in range(40):
        oid = 101 + k
        images[oid] = (np.arange(NY * NX, dtype=np.uint16).reshape(NY, NX) * 7 + oid) % 5000
        frame = make_frame(images[oid], oid, time_stamp=t)
        recorder.add_frame(capture_frame(frame, t))
        t += 0.002 if k % 2 else 0.020
    recorder.close()
    image, out = f"{prefix}:img", tmp_path / "collected.h5"
    procs.start("consumer", "-ic", image, "-nc", "2", "-du", "1", "-sqs", "50",
                "-oc", f"{prefix}:c:*:output", "-sc", f"{prefix}:c:*:status", name="consumers")  # fmt: skip
    procs.start("collector", "-ic", f"{prefix}:c:*:output", "-pid", "1,2", "-ccs", "10",
                "-oc", f"{prefix}:col:output", "-sc", f"{prefix}:col:status", name="collector")  # fmt: skip
    rec, status = start_recorder(procs, f"{prefix}:col:output", out, "-mf", "40")
    for ch in (f"{prefix}:c:1:status", f"{prefix}:c:2:status", f"{prefix}:col:status"):
        wait_for(lambda ch=ch: pv_get(ch, timeout=2), 30, ch, procs=procs)
    wait_connected(status, procs)
    sim = procs.start("sim", "-cn", image, "-if", source, "--timing", "original", "--ids",
                      "original", "-std", "3", "-shd", "5", "-rf", "json", name="replay")  # fmt: skip
    assert int(sim_final_report(sim, 30)["nSent"]) == 40
    assert rec.wait(30) == 0, rec.output()[-3000:]  # its frame limit: all 40 arrived
    with Recording(str(out)) as r:
        assert list(r.ids) == list(range(101, 141))
        for k, oid in enumerate(r.ids):
            np.testing.assert_array_equal(r.image(k), images[oid])
        assert [(a.name, list(a.values)) for a in r.attributes] == [("ColorMode", [0] * 40)]
        # The collector kept the recorded timestamps: the replay's schedule, moved to now.
        gaps = np.diff(r.time_stamps)
        np.testing.assert_allclose(gaps, [0.020, 0.002] * 19 + [0.020], atol=2e-6)
