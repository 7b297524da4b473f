"""The receiver queue (:mod:`pvhpc.receiver_queue`): bounded, counting, batching."""

from __future__ import annotations

import threading

import pytest

from pvhpc.receiver_queue import ReceiverQueue


class Getter(threading.Thread):
    """``get_batch`` in a thread of its own, as the processing thread calls it."""

    def __init__(self, queue: ReceiverQueue, timeout: float, **kwargs):
        super().__init__(daemon=True)
        self.queue, self.timeout, self.kwargs = queue, timeout, kwargs
        self.batch: list | None = None
        self.waiting = threading.Event()

    def run(self) -> None:
        self.waiting.set()
        self.batch = self.queue.get_batch(self.timeout, **self.kwargs)


def test_a_bounded_queue_rejects_and_counts_what_does_not_fit():
    q = ReceiverQueue(3)
    assert [q.put(i) for i in range(5)] == [True, True, True, False, False]
    assert (q.n_received, q.n_rejected, q.n_queued) == (5, 2, 3)
    assert q.get_batch(1) == [0, 1, 2]
    assert (q.n_delivered, q.n_queued) == (3, 0)
    assert q.put(5) and q.get_batch(1) == [5]
    assert (q.n_received, q.n_rejected, q.n_delivered) == (6, 2, 4)


def test_max_length_zero_is_unbounded():
    q = ReceiverQueue(0)
    assert all(q.put(i) for i in range(10_000))
    assert q.n_rejected == 0
    assert q.get_batch(1) == list(range(10_000))


def test_get_batch_returns_nothing_when_nothing_comes_within_its_timeout():
    q = ReceiverQueue(10)
    assert q.get_batch(0.05) == []
    assert q.get_batch(0) == []
    assert q.n_delivered == 0


def test_get_batch_wakes_for_an_object_put_while_it_waits():
    q = ReceiverQueue(10)
    getter = Getter(q, 30)
    getter.start()
    getter.waiting.wait(5)
    q.put("frame")
    getter.join(10)
    assert not getter.is_alive(), "get_batch did not return when an object came"
    assert getter.batch == ["frame"]


def test_accumulation_waits_for_the_count():
    q = ReceiverQueue(10, accumulate=3, accumulation_timeout=60)
    q.put(1)
    q.put(2)
    assert q.get_batch(0.05) == []  # 2 of 3, and the accumulation timeout is far off
    assert q.n_queued == 2
    getter = Getter(q, 30)
    getter.start()
    getter.waiting.wait(5)
    q.put(3)
    getter.join(10)
    assert getter.batch == [1, 2, 3]


def test_accumulation_timeout_releases_a_partial_batch():
    q = ReceiverQueue(10, accumulate=5, accumulation_timeout=0.1)
    q.put(1)
    q.put(2)
    # Returns once the last object is 0.1 s old, long before its own 30 s.
    getter = Getter(q, 30)
    getter.start()
    getter.join(10)
    assert not getter.is_alive()
    assert getter.batch == [1, 2]


def test_drain_returns_everything_at_once_ignoring_accumulation():
    q = ReceiverQueue(10, accumulate=100, accumulation_timeout=60)
    for i in range(4):
        q.put(i)
    assert q.get_batch(0, drain=True) == [0, 1, 2, 3]
    assert q.get_batch(0, drain=True) == []
    assert q.n_delivered == 4


def test_resize_applies_to_the_next_puts_and_keeps_what_is_queued():
    q = ReceiverQueue(5)
    for i in range(5):
        q.put(i)
    q.resize(2)
    assert q.max_length == 2
    assert not q.put(5)  # 5 queued, 2 allowed
    assert q.n_queued == 5 and q.n_rejected == 1
    assert q.get_batch(0) == [0, 1, 2, 3, 4]
    assert q.put(6) and q.put(7) and not q.put(8)
    q.resize(0)
    assert q.put(9)
    q.resize(-3)
    assert q.max_length == 0


def test_reset_stats_zeroes_the_counts_and_keeps_the_objects():
    q = ReceiverQueue(2)
    for i in range(3):
        q.put(i)
    q.reset_stats()
    assert (q.n_received, q.n_rejected, q.n_delivered, q.n_queued) == (0, 0, 0, 2)
    assert q.get_batch(0) == [0, 1]
    assert q.n_delivered == 2


def test_wake_ends_a_waiting_get_batch():
    """``wake`` (used on stop) makes a waiting ``get_batch`` return, with what is ready."""
    q = ReceiverQueue(10)
    getter = Getter(q, 30)
    getter.start()
    getter.waiting.wait(5)
    # The getter may not be inside the wait yet: wake until it has returned.
    for _ in range(200):
        q.wake()
        getter.join(0.05)
        if not getter.is_alive():
            break
    assert not getter.is_alive(), "wake() did not end get_batch's wait"
    assert getter.batch == []


def test_a_wake_before_get_batch_waits_ends_its_next_wait():
    """On stop the processing thread may be busy when ``wake`` comes: its next wait
    returns at once, and the one after waits again."""
    q = ReceiverQueue(10)
    q.wake()
    getter = Getter(q, 30)
    getter.start()
    getter.join(10)
    assert not getter.is_alive() and getter.batch == []
    assert q.get_batch(0.05) == []
    q.put(1)
    assert q.get_batch(0) == [1]


@pytest.mark.parametrize("max_length", [0, 50])
def test_monitor_thread_and_processing_thread_at_once_lose_nothing_uncounted(max_length):
    q = ReceiverQueue(max_length)
    n = 20_000
    got: list = []
    done = threading.Event()

    def processing():
        while not done.is_set():
            got.extend(q.get_batch(0.01))
        got.extend(q.get_batch(0, drain=True))

    thread = threading.Thread(target=processing)
    thread.start()
    accepted = [i for i in range(n) if q.put(i)]
    done.set()
    thread.join(10)
    assert got == accepted
    assert q.n_received == n
    assert q.n_delivered + q.n_rejected == n
    if not max_length:
        assert q.n_rejected == 0


def test_a_frame_after_a_pause_is_handed_over_at_once_the_next_ones_in_batches():
    q = ReceiverQueue(0, batch_size=5, batch_delay=60)
    q.put(0)  # the first frame (after a pause): no waiting
    assert q.get_batch(0) == [0]
    for i in range(1, 4):
        q.put(i)
    # 3 of a batch of 5 queued, the oldest far from 60 s: not yet.
    assert q.get_batch(0.05) == []
    assert q.n_queued == 3
    q.put(4)
    q.put(5)
    assert q.get_batch(0) == [1, 2, 3, 4, 5]
    assert (q.n_received, q.n_delivered, q.n_batches) == (6, 6, 2)


def test_a_waiting_get_batch_wakes_when_the_batch_is_full():
    q = ReceiverQueue(0, batch_size=3, batch_delay=60)
    q.put(0)
    assert q.get_batch(0) == [0]
    getter = Getter(q, 30)
    getter.start()
    getter.waiting.wait(5)
    q.put(1)
    q.put(2)
    q.put(3)
    getter.join(10)
    assert not getter.is_alive(), "get_batch did not return when the batch was full"
    assert getter.batch == [1, 2, 3]


def test_the_batch_delay_bounds_how_long_a_partial_batch_waits():
    q = ReceiverQueue(0, batch_size=1000, batch_delay=0.1)
    q.put(0)
    assert q.get_batch(0) == [0]
    q.put(1)
    q.put(2)
    # Returns once the oldest is 0.1 s old, long before its own 30 s.
    getter = Getter(q, 30)
    getter.start()
    getter.join(10)
    assert not getter.is_alive()
    assert getter.batch == [1, 2]


def test_a_partial_batch_is_drained_on_stop_and_counted():
    q = ReceiverQueue(2, batch_size=100, batch_delay=60)
    q.put(0)
    assert q.get_batch(0) == [0]
    assert q.put(1) and q.put(2) and not q.put(3)
    q.wake()
    assert q.get_batch(30) == []  # woken: the stop's last wait ends at once
    assert q.get_batch(0, drain=True) == [1, 2]
    assert (q.n_received, q.n_rejected, q.n_delivered, q.n_queued) == (4, 1, 3, 0)


@pytest.mark.parametrize("max_length", [0, 50])
def test_batched_hand_over_between_two_threads_loses_nothing_uncounted(max_length):
    """A steady stream with small batches and delays: every accepted object arrives
    once, in order, in fewer batches than objects."""
    q = ReceiverQueue(max_length, batch_size=8, batch_delay=0.002)
    n = 20_000
    got: list = []
    done = threading.Event()

    def processing():
        while not done.is_set():
            got.extend(q.get_batch(0.2))
        got.extend(q.get_batch(0, drain=True))

    thread = threading.Thread(target=processing)
    thread.start()
    accepted = [i for i in range(n) if q.put(i)]
    done.set()
    q.wake()
    thread.join(10)
    assert not thread.is_alive()
    assert got == accepted
    assert q.n_delivered + q.n_rejected == q.n_received == n
    assert q.n_batches < len(accepted)
