"""The simulator's publishing loop against a virtual clock: when each frame goes out.

The loop runs for real (a real :class:`pvaccess.PvaServer`, whose ``update`` a subclass
also notes down), but the module's ``time`` is a virtual clock that advances only when
the loop sleeps or reads it. Where each frame lands on that clock is therefore exact
and repeatable: these are assertions about the schedule, not about the machine's speed.
"""

from __future__ import annotations

import time as real_time

import numpy as np
import pvaccess as pva
import pytest

from harness import unique_prefix
from pvhpc.simulator import MAX_LAG, Simulator, SimulatorConfig
from pvhpc.simulator import pacing as pacing_module

# Reading the clock costs this much virtual time (so a spin through a short wait ends).
CLOCK_COST = 0.5e-6


class VirtualTime:
    """The parts of :mod:`time` the loop uses, on a virtual clock starting at 1000 s.

    ``latency(requested)`` gives how much later than asked a sleep returns; ``stalls``
    maps a frame count to extra seconds the sleep before that frame takes (the machine
    was busy elsewhere).
    """

    def __init__(self, latency=lambda requested: 0.0, stalls: dict[int, float] | None = None):
        self.now = 1000.0
        self.latency = latency
        self.stalls = dict(stalls or {})
        self.n_published = 0
        self.n_sleeps = 0

    def perf_counter(self) -> float:
        self.now += CLOCK_COST
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.n_sleeps += 1
        self.now += seconds + self.latency(seconds) + self.stalls.pop(self.n_published, 0.0)

    def time_ns(self) -> int:
        return int(self.now * 1e9)

    def process_time(self) -> float:
        return real_time.process_time()


class NotingServer(pva.PvaServer):
    """A real PvaServer that also keeps (virtual time, uniqueId) of every frame update."""

    def __init__(self, clock: VirtualTime, channel: str):
        super().__init__()
        self.clock, self.channel, self.published = clock, channel, []

    def update(self, name, obj):
        if name == self.channel:
            self.clock.n_published += 1
            self.published.append((self.clock.now, obj["uniqueId"]))
        super().update(name, obj)


def run(monkeypatch, pacing: str, fps: float, runtime: float, clock: VirtualTime):
    channel = f"{unique_prefix()}:image"
    config = SimulatorConfig(channel_name=channel, nx=4, ny=4, n_frames=3, frame_rate=fps,
                             runtime=runtime, start_delay=0, shutdown_delay=0, pacing=pacing)  # fmt: skip
    server = NotingServer(clock, channel)
    lines: list[str] = []
    try:
        sim = Simulator(config, report=lines.append, server=server)
        monkeypatch.setattr(pacing_module, "time", clock)
        stats = sim.run()
    finally:
        monkeypatch.undo()
        server.stop()
    times = np.array([t for t, _ in server.published])
    ids = [uid for _, uid in server.published]
    assert ids == list(range(1, len(ids) + 1))
    assert stats.n_sent == len(ids)
    return stats, times, lines


def deadlines(times: np.ndarray, fps: float) -> np.ndarray:
    """Frame k's deadline, with the schedule's start taken as frame 1's time."""
    return times[0] + np.arange(len(times)) / fps


@pytest.mark.parametrize("fps", [100, 5000, 20000])
def test_even_pacing_sends_one_frame_per_deadline(monkeypatch, fps):
    clock = VirtualTime()
    stats, times, lines = run(monkeypatch, "even", fps, 0.5, clock)
    assert stats.n_sent == int(fps * 0.5)
    gaps = np.diff(times)
    # Each frame at its deadline (plus the cost of a few clock readings), none early.
    assert np.all(times >= deadlines(times, fps) - 10 * CLOCK_COST)
    assert np.all(np.abs(gaps - 1 / fps) < 10 * CLOCK_COST)
    assert stats.gap_p50 == pytest.approx(1 / fps, abs=10 * CLOCK_COST)
    assert stats.gap_p99 == pytest.approx(1 / fps, abs=10 * CLOCK_COST)
    assert "pacing even" in lines[0] and "pacing even" in lines[-1]


def test_even_pacing_wakes_late_but_keeps_the_spacing(monkeypatch):
    # Every sleep returns 40 us late (what the development machine does at 1 ns timer
    # slack): the whole schedule shifts by that, the spacing stays one period.
    fps = 10000
    clock = VirtualTime(latency=lambda requested: 40e-6)
    stats, times, _ = run(monkeypatch, "even", fps, 0.2, clock)
    assert stats.n_sent == 2000
    gaps = np.diff(times[1:])
    assert np.all(np.abs(gaps - 1 / fps) < 10 * CLOCK_COST)
    assert 40e-6 <= stats.max_lag < 41e-6


def test_even_pacing_spins_through_waits_shorter_than_a_sleep_is_worth(monkeypatch):
    # At 100 kHz every wait is shorter than _SPIN: no sleep at all, still one frame
    # per deadline.
    clock = VirtualTime(latency=lambda requested: 1.0)  # a sleep would show at once
    stats, times, _ = run(monkeypatch, "even", 100_000, 0.01, clock)
    assert clock.n_sleeps == 0
    assert stats.n_sent == 1000
    assert np.all(times >= deadlines(times, 100_000) - 10 * CLOCK_COST)
    assert np.all(np.abs(np.diff(times) - 1e-5) < 10 * CLOCK_COST)


def test_even_pacing_catches_up_one_frame_at_a_time_after_a_stall(monkeypatch):
    # The sleep before frame 101 takes 5.5 periods longer: frames 101-106 are then
    # due and go out back to back (each one checking the clock again), frame 107 is
    # on its deadline again, and the run still sends exactly rate x runtime frames.
    fps = 1000
    clock = VirtualTime(stalls={100: 5.5e-3})
    stats, times, _ = run(monkeypatch, "even", fps, 0.5, clock)
    assert stats.n_sent == 500
    due = deadlines(times, fps)
    assert np.all(times >= due - 10 * CLOCK_COST)
    late = np.flatnonzero(times - due > 1e-5) + 1  # frame numbers
    assert list(late) == [101, 102, 103, 104, 105, 106]
    gaps = np.diff(times) * 1e3  # gaps[k - 2]: between frames k - 1 and k, in ms
    assert gaps[101 - 2] == pytest.approx(6.5, abs=0.01)
    assert np.all(gaps[102 - 2 : 107 - 2] < 0.01)
    assert gaps[107 - 2] == pytest.approx(0.5, abs=0.01)
    assert np.all(np.abs(gaps[108 - 2 :] - 1.0) < 0.01)
    assert stats.max_lag == pytest.approx(5.5e-3, abs=1e-5)
    assert stats.n_restarts == 0


@pytest.mark.parametrize("pacing", ["even", "burst"])
def test_far_behind_the_schedule_restarts_instead_of_catching_up(monkeypatch, pacing):
    fps = 1000
    clock = VirtualTime(stalls={50: MAX_LAG + 0.5})
    stats, times, lines = run(monkeypatch, pacing, fps, 3.0, clock)
    assert stats.n_restarts == 1
    gaps = np.diff(times)
    assert gaps[51 - 2] > MAX_LAG  # the stall
    # No catching up: the frames after it keep the rate, one period apart.
    assert np.all(gaps[52 - 2 :] > 0.9 / fps)
    assert "schedule restarted 1x" in lines[-1]


def test_burst_pacing_publishes_the_due_frames_once_per_millisecond(monkeypatch):
    fps = 5000
    clock = VirtualTime()
    stats, times, lines = run(monkeypatch, "burst", fps, 0.2, clock)
    assert stats.n_sent == 1000
    assert np.all(times >= deadlines(times, fps) - 10 * CLOCK_COST)
    # Frames published at one wake-up, back to back; wake-ups at least 1 ms apart.
    gaps = np.diff(times)
    wakes = np.flatnonzero(gaps > 1e-4)
    assert np.all(np.diff(times[wakes + 1]) >= 1e-3)
    sizes = np.diff(np.concatenate(([0], wakes + 1, [len(times)])))
    assert sizes[0] == 1 and sizes.sum() == 1000
    assert set(sizes[1:-1]) <= {5, 6} and np.median(sizes) == 5
    assert np.all((gaps < 10 * CLOCK_COST) | (gaps >= 1e-3))
    assert stats.gap_p50 < 10 * CLOCK_COST and stats.gap_p99 >= 1e-3
    assert "pacing burst" in lines[0] and "pacing burst" in lines[-1]
