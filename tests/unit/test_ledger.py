"""The set ledger: frames a dead consumer took with it, also across source restarts."""

from __future__ import annotations

from pvhpc.counting import IdRuns
from pvhpc.runtime.ledger import SetLedger


class Child:
    """A consumer child as the ledger sees it: ids processed, reported now and then."""

    def __init__(self, sid: int):
        self.sid = sid
        self.runs = {"processed": IdRuns(), "errors": IdRuns(), "rejected": IdRuns()}
        self.n_processed = 0
        self.last = -1

    def process(self, oid: int) -> None:
        if oid < self.last:  # what Stage.process_one does on a source restart
            self.runs["processed"].epoch += 1
            self.runs["errors"].epoch += 1
        self.last = oid
        self.runs["processed"].add(oid)
        self.n_processed += 1

    def message(self, final: bool = False, source_last: int = -1) -> dict:
        return {
            "progress": True,
            "final": final,
            "consumerId": self.sid,
            "stats": {
                "processorStats": {
                    "nProcessed": self.n_processed,
                    "nMissed": 0,
                    "nErrors": 0,
                    "sourceLastId": source_last,
                },
                "receiverStats": {"nRejected": 0, "nErrors": 0},
            },
            "ids": {k: r.take() for k, r in self.runs.items()},
            "pattern": None,
        }


def test_no_death_no_loss():
    ledger = SetLedger()
    a, b = Child(1), Child(2)
    for oid in range(1, 101):
        (a if oid % 2 else b).process(oid)
    ledger.take(a.message(final=True), "consumerId")
    ledger.take(b.message(final=True), "consumerId")
    s = ledger.summary()
    assert s["processed"] == 100 and s["nLost"] == 0 and s["lostWithConsumer"] == {}


def test_what_a_dead_child_held_is_lost_with_it():
    ledger = SetLedger()
    a, b = Child(1), Child(2)
    for oid in range(1, 41):
        (a if oid % 2 else b).process(oid)
    ledger.take(b.message(), "consumerId")
    # b received 42..50 (even) and died before reporting them; a goes on to 100.
    for oid in range(41, 101):
        if oid % 2 or oid > 50:
            a.process(oid)
    ledger.child(2).died("killed by signal 9")
    ledger.take(a.message(final=True, source_last=100), "consumerId")
    s = ledger.summary()
    assert s["nLost"] == 5 and s["lostWithConsumer"]["2"]["n"] == 5
    assert s["processed"] + s["nLost"] == 100


def test_source_restarts_are_separate_streams_also_for_a_respawned_child():
    ledger = SetLedger()
    a, b = Child(1), Child(2)
    # Epoch 0: ids 1..61 shared; b dies holding 52..60 (even) unreported. (Ids after
    # the last one a live child saw could not be known: the stream ends with 61.)
    for oid in range(1, 62):
        if oid % 2:
            a.process(oid)
        elif oid <= 50:
            b.process(oid)
    ledger.take(a.message(), "consumerId")
    ledger.take(b.message(), "consumerId")
    ledger.child(2).died("killed by signal 9")
    # The source restarts: epoch 1, ids 1..40 again. a takes all of them first ...
    for oid in range(1, 21):
        a.process(oid)
    ledger.take(a.message(), "consumerId")
    # ... then b is back (its own epochs start at 0 again) and they share 21..40.
    b2 = Child(2)
    for oid in range(21, 41):
        (a if oid % 2 else b2).process(oid)
    ledger.take(b2.message(final=True), "consumerId")
    ledger.take(a.message(final=True, source_last=40), "consumerId")
    s = ledger.summary()
    assert s["nEpochs"] == 2
    assert s["nLost"] == 5, s  # 52, 54, 56, 58, 60 of the first stream
    assert s["processed"] + s["nLost"] == 61 + 40


def test_ids_no_live_child_accounted_for_are_unaccounted_in_a_whole_stream_set():
    """Child 2 got nothing (the distributor gave its share to no one): it cannot count
    its share as missed; the set can, from the ids its siblings saw."""
    for whole, expected in ((True, 50), (False, 0)):
        ledger = SetLedger(whole_stream=whole)
        a, b = Child(1), Child(2)
        for oid in range(1, 101, 2):
            a.process(oid)
        ledger.take(a.message(final=True, source_last=100), "consumerId")
        ledger.take(b.message(final=True), "consumerId")
        s = ledger.summary()
        assert s["nUnaccounted"] == expected and s["nLost"] == 0, s
        if whole:
            assert (s["first"], s["last"]) == (1, 100)


def test_a_whole_stream_set_that_accounted_for_everything_has_nothing_unaccounted():
    ledger = SetLedger(whole_stream=True)
    a, b = Child(1), Child(2)
    for oid in range(1, 101):
        (a if oid % 2 else b).process(oid)
    ledger.take(a.message(final=True, source_last=100), "consumerId")
    ledger.take(b.message(final=True, source_last=100), "consumerId")
    assert ledger.summary()["nUnaccounted"] == 0


def test_two_dead_copies_of_one_set_lose_what_they_held_once():
    """Consumers of one distributor set get copies of the same frames (-nds > 1): two
    that die holding the same ids lose them once between them, not once each."""
    ledger = SetLedger(whole_stream=False)
    a, b = Child(1), Child(2)
    for oid in range(1, 41):
        a.process(oid)
        b.process(oid)
    ledger.take(a.message(source_last=50), "consumerId")
    ledger.take(b.message(source_last=50), "consumerId")
    for sid in (1, 2):
        ledger.child(sid).died("killed by signal 9")
    s = ledger.summary()
    assert s["nLost"] == 10, s
    assert s["lostWithConsumer"]["1"]["n"] + s["lostWithConsumer"]["2"]["n"] == 10
