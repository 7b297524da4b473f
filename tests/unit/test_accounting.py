"""The verdict of `pvhpc run`'s summary (:func:`pvhpc.workflow.accounting.judge`): which loss-check
lines it prints and which exit status it returns, for every kind of outcome.

tests/e2e/test_run_workflow.py provokes the same outcomes with real processes; here
each combination is checked without a network."""

from __future__ import annotations

from pvhpc.workflow import ConsumerSet
from pvhpc.workflow.accounting import EXIT_LOST, EXIT_OK, EXIT_WARNINGS, SetCheck, judge


def check(label="work (distributor)", published=100, distributor=(None, None), **counts):
    cset = ConsumerSet(label, [], ["demo:image"], distributor)
    counts.setdefault("reported", 1)
    return SetCheck(cset, published, **counts)


def result(lines):
    return [line for line in lines if line.startswith("RESULT:")]


def test_every_frame_processed_is_ok():
    lines, status = judge([check(processed=100)], [], early=False)
    assert status == EXIT_OK
    assert result(lines) == ["RESULT: ok, every frame is accounted for"]
    assert any(
        line.startswith("  ok    work (distributor) <- demo:image: 100 published") for line in lines
    )


def test_counted_losses_are_ok_and_said():
    lines, status = judge([check(processed=90, missed=6, rejected=3, errors=1)], [], False)
    assert status == EXIT_OK
    assert "(10 lost, all counted)" in lines[1]
    assert result(lines) == [
        "RESULT: ok, every frame is accounted for (10 of them counted as lost)"
    ]


def test_vanished_frames_fail():
    lines, status = judge([check(processed=95)], [], early=True)
    assert status == EXIT_LOST
    assert "5 frame(s) UNACCOUNTED FOR" in lines[1]
    assert result(lines)[0].startswith("RESULT: 5 frame(s) vanished unaccounted (stopped while")


def test_over_accounting_in_a_distributor_set_is_a_warning():
    lines, status = judge([check(processed=67, missed=66, distributor=("g1", None))], [], False)
    assert status == EXIT_WARNINGS
    assert lines[1].startswith("  extra work (distributor)")
    warnings = [line for line in lines if line.startswith("WARNING:")]
    assert len(warnings) == 1
    w = warnings[0]
    assert "work (distributor) <- demo:image accounts for 33 frame(s) more than were published" in w
    assert "another client reads demo:image" in w and "group 'g1'" in w
    assert "distributor-group" in w and "--channel-prefix" in w and "n-distributor-sets" in w
    assert result(lines) == [
        "RESULT: every frame is accounted for, with warnings: 1 consumer set(s) counted more "
        "frames than were published, so their missed counts are wrong (see WARNING above)"
    ]


def test_over_accounting_downstream_points_at_its_cause():
    upstream = check(processed=67, missed=66)
    downstream = check("collect 1", published=67, distributor=None, processed=67, missed=33)
    downstream.fed_by = ["work (distributor)"]
    lines, status = judge([upstream, downstream], [], False)
    assert status == EXIT_WARNINGS
    warnings = [line for line in lines if line.startswith("WARNING:")]
    assert "follows from the over-counting of work (distributor)" in warnings[1]


def test_over_accounting_without_distributor_points_at_the_id_step():
    lines, status = judge([check("c 1", distributor=None, processed=50, missed=60)], [], False)
    assert status == EXIT_WARNINGS
    assert "oid-offset" in next(line for line in lines if line.startswith("WARNING:"))


def test_loss_and_failures_outrank_warnings():
    lost = check("a 1", distributor=None, processed=90)
    extra = check(processed=67, missed=66)
    lines, status = judge([lost, extra], ["collect (exit status 1)"], False)
    assert status == EXIT_LOST
    assert any(line.startswith("WARNING:") for line in lines)
    assert result(lines) == [
        "RESULT: 10 frame(s) vanished unaccounted",
        "RESULT: stage(s) failed: collect (exit status 1)",
    ]


def test_a_set_that_never_reported_is_not_called_ok():
    silent = check("collect 1", published=0, distributor=None, reported=0)
    silent.missing_reports = ["collect 1"]
    lines, status = judge([silent], ["collect (exit status 1)"], False)
    assert status == EXIT_LOST
    assert lines[1] == (
        "  -     collect 1 <- demo:image: no numbers from collect 1 (it did not run), not checked"
    )


def test_a_member_short_of_its_set_mates_is_lost():
    short = check("set-a + set-b (distributor sets A, B)", published=96, processed=96)
    short.shortfall = 1
    short.notes = ["set-a 2 accounts for 47 frames, its set-mates in set A for 48"]
    lines, status = judge([short], [], False)
    assert status == EXIT_LOST
    assert "1 frame(s) UNACCOUNTED FOR" in lines[1]
    assert lines[2] == "        set-a 2 accounts for 47 frames, its set-mates in set A for 48"


def test_unknown_publisher_is_not_checked():
    lines, status = judge([check(published=None, processed=5)], [], False)
    assert status == EXIT_OK
    assert "frames published there unknown, not checked" in lines[1]


def test_the_runner_reads_the_mirrors_json_report(tmp_path):
    """The runner's mirror rows come from the mirror's JSON report (never its table)."""
    from pvhpc.mirror import ChannelCounts
    from pvhpc.mirror_report import report_json
    from pvhpc.workflow import StageSpec
    from pvhpc.workflow.process import StageProcess

    counts = ChannelCounts(
        dst="pvapy:image",
        src="ad:image",
        provider="pva",
        n_monitors=2,
        connected=1,
        received=801,
        published=800,
        skipped=0,
        overruns=2,
        errors=1,
        reconnects=0,
    )
    other = ChannelCounts("other", "x", "pva", 1, 0, 5, 5, 0, 0, 0, 0)
    stage = StageSpec("mirror", "mirror", 1, {}, {}, {})
    stage.mirrors["pvapy:image"] = None  # type: ignore[assignment]
    proc = StageProcess(stage, str(tmp_path), {})
    with open(proc.out_path, "w") as f:
        f.write(report_json([counts, other], None, 2.0, final=False) + "\n")
    proc.read_output()
    assert proc.mirror_counts == {
        "pvapy:image": {
            "received": 801,
            "published": 800,
            "rate": 400.0,
            "overruns": 2,
            "errors": 1,
            "state": "1/2 connected",
        }
    }


def test_frames_the_distributor_gave_to_no_one_are_named_in_the_summary(tmp_path):
    """A consumer set's parent that counted ids no consumer got (``nUnaccounted``) has
    them named under its set's line, also where the publisher is unknown."""
    import json

    from pvhpc.workflow import StageSpec
    from pvhpc.workflow.observer import Observer
    from pvhpc.workflow.process import StageProcess

    stage = StageSpec("work", "consumer", 2, {}, {}, {})
    proc = StageProcess(stage, str(tmp_path), {})
    summary = {"kind": "consumer-set", "consumers": [1, 2], "processed": 1, "missed": 0,
               "lostWithConsumer": {}, "nUnaccounted": 199, "first": 1, "last": 200}  # fmt: skip
    with open(proc.out_path, "w") as f:
        f.write(json.dumps(summary) + "\n")
    c = check(published=None, processed=1)
    c.cset.members.extend([(stage, 1), (stage, 2)])
    Observer(None, {"work": proc}, None)._add_lost_with_dead(c.cset, c)
    lines, status = judge([c], [], False)
    assert status == EXIT_OK
    assert lines[2] == (
        "        work: 199 frame(s) of ids 1..200 reached none of its consumers, which did not "
        "count them as missed: the distributor gave them to no one (its log says why)"
    )


def test_a_stage_whose_input_never_connected_is_a_warning_not_ok():
    """A mistyped external channel: nothing to count, so nothing lost, but not ok."""
    c = check(published=None)
    c.never_connected.append("work 1 <- det:imgae")
    lines, status = judge([c], [], False)
    assert status == EXIT_WARNINGS
    assert lines[-2].startswith(
        "WARNING: no server ever answered for the input of work 1 <- det:imgae: nothing "
        "was received there. Check the channel name"
    )
    assert result(lines) == [
        "RESULT: every frame is accounted for, with warnings: 1 stage(s) never connected "
        "to an input (see WARNING above)"
    ]


def test_the_unanswered_inputs_of_a_final_report():
    from pvhpc.workflow.observer import _unanswered

    consumer = {"inputChannel": "a", "receiverStats": {"nConnects": 0}}
    collector = {
        "inputChannel": "p1,p2",
        "receiverStats": {"nConnects": 1},
        "producerStats": {
            "producer1": {"channel": "p1", "nConnects": 2},
            "producer2": {"channel": "p2", "nConnects": 0},
        },
    }
    assert _unanswered(consumer) == ["a"]
    assert _unanswered(collector) == ["p2"]
    assert _unanswered({"inputChannel": "a", "receiverStats": {"nConnects": 1}}) == []
