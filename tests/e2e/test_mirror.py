"""The mirror server as users run it: ``python -m pvhpc mirror`` on loopback.

Sources live in the test process (a ``pvaccess.PvaServer`` publishing small
NTNDArray frames, or a CA IOC in a child process); the mirror is a real process;
what arrives on the mirrored channel is recorded and checked.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pvaccess as pva
import pytest

from harness import Recorder, pv_get, start_mirror, wait_for
from pvhpc.cli.mirror import main as mirror_main

pytestmark = pytest.mark.e2e

QUEUED = "record[queueSize=1000]field(uniqueId)"
DISTRIBUTED = "record[queueSize=1000]field(_[pydistributor=updates:1])"


def frame(unique_id: int, size: int = 8) -> pva.NtNdArray:
    """A small NTNDArray with this ``uniqueId`` and a fresh ``timeStamp``."""
    f = pva.NtNdArray()
    f["uniqueId"] = unique_id
    f["value"] = {"ubyteValue": np.full(size * size, unique_id % 256, dtype=np.uint8)}
    f["dimension"] = [
        pva.PvDimension(size, 0, size, 1, False),
        pva.PvDimension(size, 0, size, 1, False),
    ]
    now = time.time()
    f["timeStamp"] = pva.PvTimeStamp(int(now), int((now % 1) * 1e9))
    return f


class FrameSource:
    """A PVA source channel in the test process, publishing frames 1, 2, 3, …"""

    def __init__(self, channel: str):
        self.channel = channel
        self.server = pva.PvaServer(channel, frame(0))
        self.last_id = 0

    def publish(self, n: int, rate: float = 2000.0) -> list[int]:
        """Publish ``n`` frames paced at ``rate`` per second; return their ids."""
        ids = []
        start = time.monotonic()
        for k in range(1, n + 1):
            self.last_id += 1
            self.server.update(self.channel, frame(self.last_id))
            ids.append(self.last_id)
            # Pace against absolute deadlines: the rate, not a synchronisation.
            delay = start + k / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        return ids

    def stop(self) -> None:
        """Take the channel away, as a source that exits would; idempotent."""
        if self.server is not None:
            # The records live in a process-wide database: remove ours, so that a
            # restarted source may add the channel again.
            self.server.removeAllRecords()
            self.server.stop()
            self.server = None


def after_initial(values: list, first: int = 1) -> list:
    """The ids from the first published frame on (drops the initial value(s))."""
    return values[values.index(first) :] if first in values else []


def final_counts(proc, dst: str) -> dict[str, int]:
    """The counters of ``dst`` in the final report."""
    text = proc.output()
    final = text[text.index("final report") :]
    row = re.search(rf"^\s+{re.escape(dst)}\s+\S+\s+(?:\d+/\d+ )?\w+\s+(.*)$", final, re.M)
    assert row, final
    cells = row.group(1).split()
    return {
        "received": int(cells[0]),
        "published": int(cells[2]),
        "skipped": int(cells[4]),
        "overruns": int(cells[5]),
        "errors": int(cells[7]),
        "reconnects": int(cells[8]),
    }


@pytest.fixture
def source(prefix):
    sources = []

    def make(name: str = "src") -> FrameSource:
        s = FrameSource(f"{prefix}:{name}")
        sources.append(s)
        return s

    yield make
    for s in sources:
        s.stop()


def test_every_frame_arrives_in_order_and_sigint_gives_final_report(procs, prefix, source):
    src = source()
    dst = f"{prefix}:dst"
    mirror = start_mirror(procs, f"({dst},{src.channel},pva,1000)", "-rp", "0.5")
    recorder = Recorder(dst, request=QUEUED)
    try:
        wait_for(lambda: 0 in recorder.values, 15, "the initial frame on dst", procs=procs)
        sent = src.publish(2000, rate=2000)
        wait_for(lambda: recorder.values[-1] == sent[-1], 20, "the last frame on dst", procs=procs)
        assert after_initial(recorder.values) == sent
    finally:
        recorder.close()
    mirror.wait_for_output(r"report after [\d.]+ s\n.*\n.*connected\s+\d+", timeout=10)
    assert mirror.stop() == 0
    counts = final_counts(mirror, dst)
    assert counts["received"] == counts["published"] == 2001
    assert counts["overruns"] == counts["errors"] == 0


def test_seed_chain_simulator_through_mirror_at_2000_fps(procs, prefix):
    """The seed's processing-chain source: ``(pvapy:image,ad:image,pva,1000)``."""
    src, dst = f"{prefix}:ad:image", f"{prefix}:pvapy:image"
    n = 2000
    # The start delay leaves time to connect the mirror and the recorder before
    # frame 1; the test fails clearly (first value not 0) if it was too short.
    sim = procs.start(
        "sim", "-cn", src, "-nx", 128, "-ny", 128, "-dt", "uint8", "-fps", 2000,
        "-rt", n / 2000, "-std", 6, "-shd", 1, name="sim",
    )  # fmt: skip
    mirror = start_mirror(procs, f"({dst},{src},pva,1000)")
    pv_get(dst, 15)
    recorder = Recorder(dst, request=QUEUED)
    try:
        wait_for(lambda: recorder.values, 10, "frame 0 on dst", procs=procs)
        assert recorder.values[0] == 0, "the simulator started before the recorder connected"
        wait_for(lambda: n in recorder.values, 20, f"frame {n} on dst", procs=procs)
        assert after_initial(recorder.values) == list(range(1, n + 1))
    finally:
        recorder.close()
    assert sim.wait(15) == 0
    assert mirror.stop() == 0
    counts = final_counts(mirror, dst)
    assert counts["received"] == counts["published"] == n + 1
    assert counts["overruns"] == 0


def test_distributor_on_dst_alternates_frames(procs, prefix, source):
    src = source()
    dst = f"{prefix}:dst"
    start_mirror(procs, f"({dst},{src.channel},pva,1000)")
    pv_get(dst, 15)
    a = Recorder(dst, request=DISTRIBUTED)
    b = Recorder(dst, request=DISTRIBUTED)
    try:
        wait_for(lambda: a.values and b.values, 10, "the first update on dst", procs=procs)
        sent = src.publish(200, rate=1000)
        wait_for(lambda: sent[-1] in a.values + b.values, 15, "the last frame on dst", procs=procs)
        ids_a = [i for i in a.values if i > 0]
        ids_b = [i for i in b.values if i > 0]
        assert sorted(ids_a + ids_b) == sent
        assert ids_a and ids_b
        assert all(y - x == 2 for x, y in zip(ids_a, ids_a[1:])), ids_a
        assert all(y - x == 2 for x, y in zip(ids_b, ids_b[1:])), ids_b
    finally:
        a.close()
        b.close()


def test_several_source_monitors_share_the_source_via_its_distributor(procs, prefix, source):
    src = source()
    dst = f"{prefix}:dst"
    mirror = start_mirror(
        procs, f"({dst},{src.channel},pva,1000,2,_[pydistributor=updates:1])", "-rp", "0.3"
    )
    mirror.wait_for_output(r"2/2 connected", timeout=15)
    recorder = Recorder(dst, request=QUEUED)
    try:
        wait_for(lambda: recorder.values, 10, "the first update on dst", procs=procs)
        sent = src.publish(500, rate=1000)
        wait_for(lambda: sent[-1] in recorder.values, 15, "the last frame on dst", procs=procs)
        got = [i for i in recorder.values if i > 0]
        # Two monitors that each got every frame would publish each id twice.
        assert sorted(got) == sent
    finally:
        recorder.close()
    assert mirror.stop() == 0
    counts = final_counts(mirror, dst)
    # Both monitors start with the source's current object; dst gets it once.
    assert counts["skipped"] == 1
    assert counts["published"] == counts["received"] - 1 == len(sent) + 1


def test_mirror_waits_for_a_late_source_and_follows_its_restart(procs, prefix):
    channel, dst = f"{prefix}:src", f"{prefix}:dst"
    mirror = start_mirror(procs, f"({dst},{channel},pva,1000)", "-rp", "0.3")
    # Two reports with the source absent: the mirror has been searching for a while.
    wait_for(
        lambda: len(re.findall(r"pva://\S+\s+waiting", mirror.output())) >= 2,
        10,
        "the mirror to report that it waits",
        procs=procs,
    )
    src = FrameSource(channel)
    recorder = None
    try:
        recorder = Recorder(dst, request=QUEUED)
        wait_for(lambda: 0 in recorder.values, 15, "the late source's initial frame", procs=procs)
        first = src.publish(100, rate=1000)
        wait_for(lambda: recorder.values[-1] == first[-1], 10, "frame 100", procs=procs)

        src.stop()
        mirror.wait_for_output(r"disconnected", timeout=10)
        # dst stays up with its last frame while the source is away.
        assert pv_get(dst, 5, "field(uniqueId)")["uniqueId"] == first[-1]

        src = FrameSource(channel)
        n_logged = len(re.findall(r"source \S+ connected after", mirror.output()))
        wait_for(
            lambda: len(re.findall(r"source \S+ connected after", mirror.output())) > n_logged,
            15,
            "the mirror to connect to the restarted source",
            procs=procs,
        )
        again = src.publish(100, rate=1000)
        wait_for(lambda: recorder.values[-1] == again[-1], 10, "frame 100 again", procs=procs)
        # The client of dst never reconnected: it saw both streams, in order. The
        # restarted source's placeholder (id 0) is not a frame: dst does not repeat it.
        assert recorder.values == [0, *first, *again]
    finally:
        if recorder is not None:
            recorder.close()
        src.stop()
    mirror.signal(signal.SIGTERM)
    assert mirror.wait(10) == 0
    assert final_counts(mirror, dst)["reconnects"] == 1


IOC_SCRIPT = textwrap.dedent(
    """
    import os, select, sys, tempfile, time
    import pvaccess as pva
    name = sys.argv[1]
    db = tempfile.NamedTemporaryFile("w", suffix=".db", delete=False)
    db.write('record(longout, "%s") {}\\n' % name)
    db.close()
    ioc = pva.CaIoc()
    ioc.loadDatabase("base.dbd", os.path.join(os.path.dirname(pva.__file__), "dbd"), "")
    ioc.registerRecordDeviceDriver()
    ioc.loadRecords(db.name, "")
    ioc.start()
    os.unlink(db.name)
    print("ioc running", flush=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if not select.select([sys.stdin], [], [], 0.5)[0]:
            continue
        line = sys.stdin.readline().split()
        if not line or line[0] == "quit":
            break
        ioc.putField(name, int(line[1]))
    """
)


def _free_port() -> int:
    """A port free for both UDP and TCP on loopback, for the IOC's CA server."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise AssertionError("no free port for the CA IOC")


class CaIoc:
    """A CA IOC (``pvaccess.CaIoc``) in a child process, serving one longout record.

    A process of its own, because a process can initialise only one IOC. It has a
    CA port of its own too: CA searches sent to 127.0.0.1 reach only the newest of
    several CA servers sharing a port on one host, and other tests (or developers)
    may run one at the same time. Only processes given :attr:`client_env` find it,
    so the record is written by the IOC itself, on :meth:`put`.
    """

    def __init__(self, name: str, log_path):
        self.name = name
        self.port = _free_port()
        self.client_env = {"EPICS_CA_ADDR_LIST": f"127.0.0.1:{self.port}"}
        self.log = open(log_path, "w+")
        env = dict(os.environ, EPICS_CA_SERVER_PORT=str(self.port))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", IOC_SCRIPT, name],
            stdin=subprocess.PIPE,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
            start_new_session=True,
        )

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def running(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"CA IOC exited ({self.proc.returncode}):\n{self.output()}")
        return "ioc running" in self.output()

    def put(self, value: int) -> None:
        self.proc.stdin.write(f"put {value}\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


@pytest.fixture
def ca_ioc(prefix, tmp_path):
    ioc = CaIoc(f"{prefix}:counter", tmp_path / "ioc.log")
    try:
        wait_for(ioc.running, 20, "the CA IOC to start")
        yield ioc
    finally:
        ioc.close()


def test_ca_source_is_mirrored_on_pva(procs, prefix, ca_ioc):
    dst = f"{prefix}:dst"
    mirror = procs.start(
        "mirror", "-cm", f"({dst},{ca_ioc.name},ca,100)", "-ll", "info", env=ca_ioc.client_env
    )
    recorder = Recorder(dst, field="value", request="record[queueSize=100]field(value)")
    try:
        wait_for(lambda: recorder.values, 20, "the CA value on dst", procs=procs)
        for value in range(1, 21):
            ca_ioc.put(value)
            wait_for(lambda v=value: recorder.values[-1] == v, 5, f"value {value} on dst")
        assert after_initial(recorder.values) == list(range(1, 21))
    finally:
        recorder.close()
    assert mirror.stop() == 0


def test_runtime_end_stops_with_a_final_report(procs, prefix):
    mirror = procs.start("mirror", "-cm", f"({prefix}:dst,{prefix}:nowhere)", "-rt", "1", "-dc")
    assert mirror.wait(15) == 0
    out = mirror.output()
    assert "final report after" in out
    assert re.search(rf"{prefix}:dst\s+pva://{prefix}:nowhere\s+waiting\s+0", out), out


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["-cm", "(a,b"], "--channel-map: unbalanced parentheses"),
        (["-cm", "(a,b,http)"], "provider 'http' is not pva or ca"),
        (["-cm", "(a,b,pva,many)"], "srcQueueSize 'many'"),
        (["-cm", "(a,b,pva,10,2)"], "nSrcMonitors '2' given without srcRequest"),
        (["-cm", ""], "empty channel map"),
        ([], "-cm/--channel-map"),
        (["-cm", "(a,b)", "-rt", "soon"], "-rt/--runtime: 'soon'"),
        (["-cm", "(a,b)", "-rp", "nan"], "-rp/--report-period: 'nan'"),
        (["-cm", "(a,b)", "-ll", "loud"], "-ll/--log-level"),
        (["-cm", "(a,b)", "--colour"], "--colour"),
        (["-cm", "(a,b)", "-lf", "/nonexistent/dir/mirror.log"], "--log-file: cannot open"),
    ],
)
def test_user_mistakes_are_one_line_and_status_2(capsys, argv, fragment):
    assert mirror_main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_map_from_the_command_line(procs):
    proc = procs.start("mirror", "-cm", "(a,,pva)")
    assert proc.wait(15) == 2
    out = proc.output().strip()
    assert (
        out
        == "pvapy-mirror-server: error: --channel-map: mapping 1 '(a,,pva)': empty src channel name"
    )


def test_version(capsys):
    assert mirror_main(["-v"]) == 0
    assert capsys.readouterr().out.startswith("pvhpc ")
