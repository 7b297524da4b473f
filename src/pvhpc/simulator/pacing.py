"""When each frame goes out: the simulator's publishing loop, against absolute deadlines.

Frame *i* (counting from 0) is due at ``t0 + i / frame_rate``. By default
(``pacing="even"``) frames go out as a detector sends them, one per deadline: the
loop sleeps until the next deadline (with the thread's timer slack at 1 ns, so that
the kernel wakes it when asked rather than up to 50 us later), publishes that one
frame and looks at the clock again. A frame that is already due when the previous
one is out (the loop woke late, or publishing took longer than a period) goes out at
once, so the average rate stays exact; frames are never sent before their deadline.
Waits shorter than ``_SPIN`` are spun instead: such a sleep costs more CPU than the
wait and wakes later than the deadline.

``pacing="burst"`` is the cheaper option for high rates: each wake-up publishes
every frame already due, and above 1000 frames per second the loop sleeps at least a
millisecond (``_TICK``), so that frames leave in bursts of ``frame_rate / 1000``
(a sleep and wake-up costs more CPU than publishing a frame).

In both modes, if the loop falls more than :data:`MAX_LAG` behind (the machine cannot
keep up, or the process was suspended) the schedule restarts from the present
instead of sending a second's worth of frames at once. The statistics give the
inter-frame gaps (median and 99th percentile) measured at publish time.
"""

from __future__ import annotations

import ctypes
import logging
import math
import threading
import time
from collections.abc import Callable

import numpy as np

from .config import SimulatorStats

__all__ = ["END_GRACE", "MAX_LAG", "gap_stats", "pace"]

logger = logging.getLogger("pvhpc.simulator")

# Further behind schedule than this, pacing restarts from the present.
MAX_LAG = 1.0
# A frame due before the end of the runtime is still sent this late; later, the
# runtime wins (the machine is not keeping up).
END_GRACE = 0.1
# Waits shorter than this use time.sleep; longer ones wait on the stop event.
_SHORT_WAIT = 0.05
# Even pacing spins through waits shorter than this instead of sleeping: on the
# development machine a sleep costs 30-45 us of CPU and wakes 35-50 us late even
# with a timer slack of 1 ns, so a short spin is both cheaper and on time.
_SPIN = 20e-6
# Burst pacing: above 1/_TICK frames per second, the simulator wakes up once per
# tick and publishes the frames that came due meanwhile in one burst.
_TICK = 0.001
# Inter-frame gaps are computed from the publish times of at most this many recent
# frames (8 MiB; 100 s at 10 kHz).
_GAP_SAMPLES = 1 << 20
# prctl(2) options for the calling thread's timer slack.
_PR_SET_TIMERSLACK = 29
_PR_GET_TIMERSLACK = 30

#: ``report(n_recent, recent_rate)``: a periodic report of ``stats`` is due.
PeriodicReport = Callable[[int, float], None]


def pace(
    send: Callable[[int], None],
    stats: SimulatorStats,
    stop_event: threading.Event,
    *,
    frame_rate: float,
    runtime: float,
    pacing: str = "even",
    report_period: int = 0,
    report: PeriodicReport | None = None,
    schedule: Callable[[int], float] | None = None,
    n_frames: int = 0,
) -> None:
    """Call ``send(n)`` for frames n = 1, 2, ... at their deadlines (blocks the caller).

    Frame ``n`` is due ``(n - 1) / frame_rate`` seconds after the start, or
    ``schedule(n - 1)`` seconds with a ``schedule`` (a replay's recorded timing;
    ``frame_rate`` is then only its nominal rate). Ends after ``n_frames`` frames
    (0: no limit), once the next deadline is past ``runtime`` (``<= 0``: never) or
    when ``stop_event`` is set; a run that ends by its runtime also waits out the
    last frame's period, so that n frames take n periods. ``send`` runs on the
    calling thread and should return within a period. Every ``report_period``
    frames, ``stats`` is brought up to date and ``report`` called; at the end
    ``stats`` holds the whole run, with how late frames went out against their
    deadlines (``late_p50``/``late_p99``).
    """
    period = 1.0 / frame_rate
    if schedule is None:

        def schedule(k: int) -> float:
            return k * period

    limit = n_frames if n_frames > 0 else math.inf
    even = pacing == "even"
    # Bursts above 1/_TICK: waking up for every frame costs more CPU than the
    # frame itself (a sleep and wake-up is 30-45 us here), so sleep at least one
    # tick and publish what has come due meanwhile.
    min_sleep = _TICK if not even and period < _TICK else 0.0
    spin = _SPIN if even else 0.0
    stopped = stop_event.is_set
    clock = time.perf_counter
    sleep = time.sleep
    # Publish times of the last n_times frames (frame k at k % n_times), for the gaps.
    expected = frame_rate * (runtime + END_GRACE) + 2 if runtime > 0 else math.inf
    n_times = int(min(_GAP_SAMPLES, expected))
    times = np.zeros(n_times)
    late = np.zeros(n_times)
    saved_slack = _set_timer_slack(1) if even else None
    cpu0 = time.process_time()
    t0 = start = clock()
    end = start + runtime if runtime > 0 else math.inf
    last_report_t, last_report_n = start, 0
    sent = 0
    max_lag = 0.0
    try:
        while sent < limit:
            deadline = t0 + schedule(sent)
            if deadline >= end or stopped():
                break
            now = clock()
            if now < deadline:
                wait = max(deadline - now, min_sleep)
                if wait < spin:
                    while now < deadline:
                        now = clock()
                else:
                    if wait < _SHORT_WAIT:
                        sleep(wait)
                    elif stop_event.wait(wait):
                        break
                    now = clock()
            elif now >= end + END_GRACE:
                break
            lag = now - deadline
            if lag > max_lag:
                if lag > MAX_LAG:
                    t0 = now - schedule(sent)
                    stats.n_restarts += 1
                    if stats.n_restarts == 1:
                        logger.warning(
                            "%s: more than %g s behind schedule; cannot keep up %g fps",
                            stats.channel_name,
                            MAX_LAG,
                            frame_rate,
                        )
                else:
                    max_lag = lag
            # Even: the frame whose deadline woke us. Burst: every frame due by
            # ``now``, at least that one.
            while True:
                sent += 1
                t = times[sent % n_times] = clock()
                late[sent % n_times] = t - deadline
                send(sent)
                if report_period and sent % report_period == 0:
                    t = clock()
                    stats.n_sent, stats.elapsed = sent, t - start
                    stats.cpu, stats.max_lag = time.process_time() - cpu0, max_lag
                    stats.gap_p50, stats.gap_p99 = gap_stats(times, last_report_n, sent)
                    interval = t - last_report_t
                    if report is not None:
                        recent = (sent - last_report_n) / interval if interval > 0 else 0.0
                        report(sent - last_report_n, recent)
                    last_report_t, last_report_n = t, sent
                if sent >= limit:
                    break
                deadline = t0 + schedule(sent)
                if even or deadline > now or deadline >= end or stopped():
                    break
        if not stopped() and math.isfinite(end) and sent < limit:
            # Runtime is over: the last frame's period ends at the next deadline,
            # so that n frames take n periods and the rate reads true.
            remaining = t0 + schedule(sent) - clock()
            if remaining > 0:
                stop_event.wait(remaining)
    finally:
        if saved_slack is not None:
            _set_timer_slack(saved_slack)
    # A frame's period counts whole, also when a stop cuts it short.
    stats.n_sent, stats.elapsed = sent, max(clock(), t0 + schedule(sent)) - start
    stats.cpu, stats.max_lag = time.process_time() - cpu0, max_lag
    stats.gap_p50, stats.gap_p99 = gap_stats(times, 0, sent)
    stats.late_p50, stats.late_p99 = _late_stats(late, sent)


def gap_stats(times: np.ndarray, first: int, last: int) -> tuple[float | None, float | None]:
    """Median and 99th percentile of the gaps between frames ``first``..``last`` (their
    publish times at ``k % len(times)``; frame 0 was never published, and only the last
    ``len(times)`` frames are still there); (None, None) without two frames."""
    first = max(first, 1, last - len(times) + 1)
    if last - first < 1:
        return None, None
    gaps = np.diff(times[np.arange(first, last + 1) % len(times)])
    p50, p99 = np.percentile(gaps, (50, 99))
    return float(p50), float(p99)


def _late_stats(late: np.ndarray, sent: int) -> tuple[float | None, float | None]:
    """Median and 99th percentile of how late the last frames went out."""
    n = min(sent, len(late))
    if n < 1:
        return None, None
    p50, p99 = np.percentile(late[:n] if sent <= len(late) else late, (50, 99))
    return float(p50), float(p99)


def _set_timer_slack(nanoseconds: int) -> int | None:
    """Set the calling thread's timer slack (Linux, prctl(2)); return the previous
    value, or None where that is not possible (then sleeps keep the default slack)."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        prctl.restype = ctypes.c_int
        prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
        previous = prctl(_PR_GET_TIMERSLACK, 0, 0, 0, 0)
        if previous <= 0 or prctl(_PR_SET_TIMERSLACK, nanoseconds, 0, 0, 0) != 0:
            return None
    except (OSError, AttributeError, TypeError):
        return None
    return previous
