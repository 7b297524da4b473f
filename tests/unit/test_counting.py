"""Missed-id counting (SPEC §5): offsets, runs of U, restarts."""

from hypothesis import given, settings
from hypothesis import strategies as st

from pvhpc.counting import IdTracker, expected_offset


def test_expected_offset_rules():
    assert expected_offset(0, 1, None) == 1
    assert expected_offset(0, 2, 1) == 2
    assert expected_offset(0, 4, 8) == 25
    assert expected_offset(0, 2, 3, n_sets=2) == 4
    assert expected_offset(57, 4, 8) == 57
    assert expected_offset(-1, 1, 3) == 1  # one consumer: every id is ours


def feed(tracker, ids):
    for i in ids:
        tracker.update(i)
    return tracker.n_missed


def test_consecutive_ids_miss_nothing():
    assert feed(IdTracker(), range(1, 101)) == 0


def test_gaps_are_counted():
    assert feed(IdTracker(), [1, 2, 5, 6, 10]) == 2 + 3


def test_alternating_consumer():
    assert feed(IdTracker(2), [1, 3, 5, 7]) == 0
    assert feed(IdTracker(2), [1, 3, 9]) == 2


def test_runs_of_three_with_two_sets():
    # Set A of two sets with U=3 receives 1,2,3,7,8,9,13,...
    assert feed(IdTracker(4, 3), [1, 2, 3, 7, 8, 9, 13, 14, 15]) == 0
    # gap inside a run, a whole missing run, and the start of a run
    assert feed(IdTracker(4, 3), [1, 3, 7, 8, 9, 20, 21]) == 1 + 3 + 1


def test_restart_is_a_new_stream_not_a_loss():
    t = IdTracker()
    assert feed(t, [1, 2, 3, 4, 1, 2, 3]) == 0
    assert t.n_restarts == 1


def test_reset_forgets_position():
    t = IdTracker()
    feed(t, [1, 5])
    t.reset()
    assert t.n_missed == 0
    assert feed(t, [100, 101]) == 0


def distributor_ids(n_total, n_clients, updates, client):
    """Ids the distributor gives ``client`` (0-based) of ``n_clients``, runs of ``updates``."""
    return [i for i in range(1, n_total + 1) if ((i - 1) // updates) % n_clients == client]


@settings(max_examples=300, deadline=None)
@given(
    n_clients=st.integers(1, 5),
    updates=st.integers(1, 9),
    client=st.integers(0, 4),
    n_total=st.integers(20, 300),
    drop=st.sets(st.integers(0, 400), max_size=60),
)
def test_missed_equals_dropped_between_first_and_last(n_clients, updates, client, n_total, drop):
    client %= n_clients
    ours = distributor_ids(n_total, n_clients, updates, client)
    kept = [oid for k, oid in enumerate(ours) if k not in drop]
    if len(kept) < 2:
        return
    dropped_inside = sum(1 for oid in ours if kept[0] < oid < kept[-1] and oid not in kept)
    offset = expected_offset(0, n_clients, updates)
    run = updates if n_clients > 1 else 1
    assert feed(IdTracker(offset, run), kept) == dropped_inside


def test_pending_and_tail_missed_plain():
    t = IdTracker()
    feed(t, [1, 2, 3])
    assert t.pending(3) == 0
    assert t.pending(10) == 7
    assert t.count_missed_until(10) == 7
    assert t.n_missed == 7


def test_pending_counts_only_our_ids_with_distribution():
    t = IdTracker(2)  # two consumers, U=1: we get odd ids
    feed(t, [1, 3, 5])
    assert t.pending(10) == 2  # 7 and 9
    runs = IdTracker(4, 3)  # two sets, U=3: 1,2,3,7,8,9,13,...
    feed(runs, [1, 2, 3, 7])
    assert runs.pending(14) == 2 + 2  # 8, 9, 13, 14


def test_pending_is_zero_after_a_restart_below_last():
    t = IdTracker()
    feed(t, [5, 6])
    assert t.pending(3) == 0
