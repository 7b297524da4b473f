"""The collector's sorting cache: order, duplicates, late ids, runtime resize."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from pvhpc.sorting import SortingCache


def make(size, step=1, producers=1):
    out = []
    cache = SortingCache(size, lambda pv, oid: out.append(oid), step, producers)
    return cache, out


def test_releases_lowest_ids_when_full():
    cache, out = make(3, producers=2)
    for oid in [1, 3, 4, 5]:
        cache.add(f"pv{oid}", oid, 0)  # producer 1 has sent nothing: no watermark
    assert out == [1]
    cache.flush()
    assert out == [1, 3, 4, 5]


def test_ids_below_every_producers_last_id_are_released_at_once():
    cache, out = make(100, producers=2)
    cache.add("a", 1, 0)
    cache.add("b", 3, 0)
    assert out == []  # producer 1 could still send 1 or 2
    cache.add("c", 2, 1)
    assert out == [1]  # both producers are past 1; 2 may still get a sibling
    cache.add("d", 4, 1)
    assert out == [1, 2]  # producer 0 may still send another 3 (a tile)
    cache.flush()
    assert out == [1, 2, 3, 4]


def test_duplicates_released_together():
    cache, out = make(4, producers=4)
    # four producers each send one tile of frames 1, 2, 3 (in order per producer)
    for producer, oid in [
        (0, 1),
        (1, 1),
        (0, 2),
        (2, 1),
        (1, 2),
        (3, 1),
        (2, 2),
        (3, 2),
        (0, 3),
        (1, 3),
    ]:
        cache.add(oid, oid, producer)
    cache.flush()
    assert out == [1, 1, 1, 1, 2, 2, 2, 2, 3, 3]
    assert cache.n_rejected == 0


def test_late_ids_are_rejected_and_counted():
    cache, out = make(2, producers=2)
    for oid in [1, 2, 3, 4, 5]:
        cache.add(oid, oid, 0)
    assert cache.add("late", 1, 1) is False  # producer 1 is far behind
    cache.flush()
    assert cache.n_rejected == 1
    assert 1 in out and out.count(1) == 1


def test_resize_at_runtime_releases_surplus():
    cache, out = make(10, producers=4)
    for producer, oid in enumerate([10, 8, 6, 4]):
        cache.add(oid, oid, producer)
    assert out == []
    cache.resize(2)
    assert out == [4, 6]
    assert len(cache) == 2


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 200), producers=st.integers(1, 6), seed=st.integers(0, 10**6))
def test_interleaved_producers_come_out_sorted_and_complete(n, producers, seed):
    # Producer p sends the ids i with i % producers == p, in order. The frames go out
    # in rounds of `producers` consecutive ids, each round in a random producer order:
    # no producer is ever more than two rounds ahead of another, so a cache of two
    # rounds holds the whole skew and nothing may be rejected.
    rng = random.Random(seed)
    order = []
    for first in range(1, n + 1, producers):
        round_ = list(range(first, min(first + producers, n + 1)))
        rng.shuffle(round_)
        order += round_
    cache, out = make(producers * 2, producers=producers)
    for oid in order:
        assert cache.add(oid, oid, oid % producers) is True
    cache.flush()
    assert out == list(range(1, n + 1))
    assert cache.n_rejected == 0


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 200), producers=st.integers(1, 6), seed=st.integers(0, 10**6))
def test_skew_beyond_the_cache_rejects_exactly_the_late_ids(n, producers, seed):
    # Any interleaving of in-order producer streams, with skew unbounded: an id is
    # rejected exactly when it arrives below the last released id, every other id
    # is released once and in order, and the count says how many were rejected.
    rng = random.Random(seed)
    streams = [[i for i in range(1, n + 1) if i % producers == p] for p in range(producers)]
    cache, out = make(producers * 2, producers=producers)
    rejected = []
    while any(streams):
        index = rng.choice([k for k, s in enumerate(streams) if s])
        oid = streams[index].pop(0)
        late = cache.last_released is not None and oid < cache.last_released
        accepted = cache.add(oid, oid, index)
        assert accepted is not late, (oid, cache.last_released)
        if not accepted:
            rejected.append(oid)
    cache.flush()
    assert out == sorted(set(out))
    assert sorted(out + rejected) == list(range(1, n + 1))
    assert cache.n_rejected == len(rejected)
    assert cache.n_duplicates == 0


def test_idle_cache_releases_the_end_of_a_stream():
    cache, out = make(100, producers=2)
    cache.add("a", 7, 0)
    cache.add("b", 7, 1)
    assert out == []  # both producers may still send another 7
    assert cache.release_idle(60) == 0
    cache.last_add -= 2
    assert cache.release_idle(1.0) == 2
    assert out == [7, 7]


class _Clock:
    """A hand-moved time.monotonic for the cache's silence checks."""

    def __init__(self, monkeypatch):
        self.now = 1000.0
        monkeypatch.setattr("pvhpc.sorting.time.monotonic", lambda: self.now)


def test_a_silent_producer_is_left_out_of_the_watermark_until_it_sends_again(monkeypatch):
    clock = _Clock(monkeypatch)
    out = []
    cache = SortingCache(100, lambda pv, oid: out.append(oid), 1, 2, gap_timeout=2.0)
    cache.add("a", 1, 0)
    cache.add("b", 2, 1)
    assert out == []  # both may still send another 1 (a tile)
    # Producer 1 dies; producer 0 goes on. Everything waits for producer 1...
    for oid in (3, 5, 7):
        clock.now += 0.5
        cache.add(f"p{oid}", oid, 0)
    assert cache.leave_out_silent() == []  # 1.5 s of silence: not yet
    assert out == [1]
    clock.now += 0.5
    cache.add("p9", 9, 0)
    # ...until it has been silent for the timeout while producer 0 was not.
    assert cache.leave_out_silent() == [1]
    assert cache.silent == {1: clock.now}
    assert out == [1, 2, 3, 5, 7]  # 9 may still get a sibling from producer 0
    assert cache.leave_out_silent() == []  # said once
    clock.now += 0.1
    cache.add("p11", 11, 0)
    assert out == [1, 2, 3, 5, 7, 9]
    # It comes back: in the watermark again, and late ids from it are rejected.
    cache.add("late", 4, 1)
    assert cache.silent == {} and cache.n_rejected == 1
    cache.add("p12", 12, 1)
    cache.add("p13", 13, 0)
    assert out == [1, 2, 3, 5, 7, 9, 11]


def test_a_pause_of_the_whole_stream_leaves_no_producer_out(monkeypatch):
    clock = _Clock(monkeypatch)
    cache = SortingCache(100, lambda pv, oid: None, 1, 2, gap_timeout=1.0)
    cache.add("a", 1, 0)
    clock.now += 5
    assert cache.leave_out_silent() == []  # nobody sent: release_idle's case
    # A producer that never sent at all is silent from the stream's first object on.
    cache.add("b", 2, 0)
    assert cache.leave_out_silent() == [1]


def test_gap_timeout_zero_waits_for_ever(monkeypatch):
    clock = _Clock(monkeypatch)
    out = []
    cache = SortingCache(100, lambda pv, oid: out.append(oid), 1, 2, gap_timeout=0)
    cache.add("a", 1, 0)
    clock.now += 3600
    cache.add("b", 2, 0)
    assert cache.leave_out_silent() == [] and out == []


def test_a_restarted_source_is_a_new_stream_released_after_the_old_one():
    cache, out = make(100, producers=2)
    for oid in (1, 2, 3, 4, 5, 6):
        cache.add(oid, oid, oid % 2)  # producer 1 has the odd ids, 0 the even
    assert out == [1, 2, 3, 4]
    # The source restarts: producer 0 sees ids from 2 again, before producer 1's 7.
    cache.add("new2", 2, 0)
    cache.add("old7", 7, 1)  # the end of the old stream is still sorted in
    assert out == [1, 2, 3, 4, 5, 6]
    cache.add("new1", 1, 1)  # producer 1 restarts too
    cache.add("new4", 4, 0)
    assert out == [1, 2, 3, 4, 5, 6, 7]  # the new stream waits for both producers
    assert cache.n_rejected == 0 and cache.last_released == 7
    cache.flush()
    assert out == [1, 2, 3, 4, 5, 6, 7, 1, 2, 4]
