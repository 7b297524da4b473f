"""Workflow files are checked completely before anything starts: every mistake is one
line naming the file, the line and the bad key or value (exit status 2)."""

from __future__ import annotations

import glob
import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

from pvhpc.workflow import WorkflowError, load_workflow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKFLOWS = os.path.join(ROOT, "examples", "workflows")
HAS_MIRROR = importlib.util.find_spec("pvhpc.cli.mirror") is not None

SIM = """\
  sim:
    type: sim
    channel-name: pvapy:image
"""


def write(tmp_path, text: str, name: str = "wf.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def refused(tmp_path, text: str) -> WorkflowError:
    path = write(tmp_path, text)
    with pytest.raises(WorkflowError) as info:
        load_workflow(path)
    assert str(info.value).startswith(f"{path}:"), str(info.value)
    assert "\n" not in str(info.value)
    return info.value


def test_unknown_option_names_line_and_suggests(tmp_path):
    err = refused(
        tmp_path,
        "stages:\n  c:\n    type: consumer\n    input-channel: pvapy:image\n"
        "    n-consumerz: 2\n" + SIM,
    )
    assert err.line == 5
    assert "unknown option 'n-consumerz'" in str(err)
    assert "did you mean 'n-consumers'" in str(err)


def test_short_option_name_points_to_the_long_one(tmp_path):
    err = refused(tmp_path, "stages:\n  sim:\n    type: sim\n    nx: 64\n")
    assert err.line == 4
    assert "'n-x-pixels'" in str(err)


def test_unknown_stage_type(tmp_path):
    err = refused(tmp_path, "stages:\n  c:\n    type: consumr\n")
    assert err.line == 3
    assert "unknown type 'consumr'" in str(err) and "'consumer'" in str(err)


def test_missing_type_and_missing_required_option(tmp_path):
    err = refused(tmp_path, "stages:\n  c:\n    input-channel: x\n")
    assert err.line == 2 and "no 'type'" in str(err)
    err = refused(tmp_path, "stages:\n  c:\n    type: consumer\n")
    assert err.line == 2 and "missing option input-channel" in str(err)


def test_input_channel_nobody_serves(tmp_path):
    err = refused(
        tmp_path,
        "stages:\n  c:\n    type: consumer\n    n-consumers: 2\n"
        "    input-channel: pvapy:imag\n" + SIM,
    )
    assert err.line == 5
    assert "input-channel pvapy:imag is served by no stage" in str(err)
    assert "did you mean 'pvapy:image'" in str(err)


def test_external_channels_are_accepted(tmp_path):
    path = write(
        tmp_path,
        "external: [ad:image]\nstages:\n  c:\n    type: consumer\n    input-channel: ad:image\n",
    )
    wf = load_workflow(path)
    assert wf.stages[0].requires[0][0].name == "ad:image"


def test_bad_value_names_the_option_line(tmp_path):
    err = refused(tmp_path, "stages:\n  sim:\n    type: sim\n    frame-rate: fast\n")
    assert err.line == 4
    assert "frame-rate: 'fast' is not a positive number" in str(err)


def test_cross_option_mistake_points_at_the_option(tmp_path):
    err = refused(
        tmp_path,
        "stages:\n  c:\n    type: consumer\n    input-channel: pvapy:image\n"
        "    report-period: 2\n    accumulate-objects: 10\n" + SIM,
    )
    assert err.line == 6
    assert "accumulate-objects needs a receiver queue" in str(err)
    assert "--" not in str(err).split(": ", 1)[1]


def test_flag_values_must_be_booleans(tmp_path):
    err = refused(tmp_path, "stages:\n  sim:\n    type: sim\n    mmap-mode: 3\n")
    assert err.line == 4 and "expected true or false" in str(err)


def test_duplicate_key(tmp_path):
    err = refused(
        tmp_path,
        "stages:\n  c:\n    type: consumer\n    input-channel: a\n    input-channel: b\n",
    )
    assert err.line == 5 and "'input-channel' is given twice" in str(err)


def test_yaml_syntax_error_has_a_line(tmp_path):
    err = refused(tmp_path, "stages:\n  c:\n    type: consumer\n  s: {type: sim\n")
    assert err.line is not None and "not valid YAML" in str(err)


def test_unknown_top_level_key(tmp_path):
    err = refused(tmp_path, "name: x\nstagez: {}\n")
    assert err.line == 2 and "did you mean 'stages'" in str(err)


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("network: lan\nstages: {s: {type: sim}}\n", 1, "network: 'lan'"),
        ("duration: -1\nstages: {s: {type: sim}}\n", 1, "duration: expected seconds > 0"),
        ("stages: []\n", 1, "stages: expected a mapping"),
    ],
)
def test_top_level_values(tmp_path, text, line, words):
    err = refused(tmp_path, text)
    assert err.line == line and words in str(err)


def test_a_channel_served_twice(tmp_path):
    err = refused(tmp_path, "stages:\n  a:\n    type: sim\n  b:\n    type: sim\n")
    assert err.line == 4 and "pvapy:image is also served by stage 'a' (line 2)" in str(err)


def test_default_status_channels_of_two_groups_collide(tmp_path):
    err = refused(
        tmp_path,
        "stages:\n  a:\n    type: consumer\n    input-channel: pvapy:image\n"
        "  b:\n    type: consumer\n    input-channel: pvapy:image\n" + SIM,
    )
    assert err.line == 5 and "default channel name" in str(err)


def test_a_cycle_is_refused(tmp_path):
    err = refused(
        tmp_path,
        """\
        stages:
          a:
            type: consumer
            input-channel: b:1:output
            output-channel: a:*:output
            status-channel: a:*:status
            control-channel: a:*:control
          b:
            type: consumer
            input-channel: a:1:output
            output-channel: b:*:output
            status-channel: b:*:status
            control-channel: b:*:control
        """,
    )
    assert "cycle" in str(err)


def test_processor_file_is_relative_to_the_workflow_file(tmp_path):
    sub = tmp_path / "wf"
    sub.mkdir()
    (sub / "proc.py").write_text(
        "from pvhpc import UserDataProcessor\nclass P(UserDataProcessor):\n    pass\n"
    )
    text = (
        "stages:\n  c:\n    type: consumer\n    input-channel: pvapy:image\n"
        "    processor-file: proc.py\n    processor-class: P\n" + SIM
    )
    wf = load_workflow(write(sub, text))
    assert f"--processor-file={sub / 'proc.py'}" in wf.stages[0].argv
    err = refused(tmp_path, text.replace("proc.py", "nothere.py"))
    assert err.line == 5 and "nothere.py" in str(err)


def test_access_security_file_is_relative_to_the_workflow_file(tmp_path):
    sub = tmp_path / "wf"
    sub.mkdir()
    (sub / "ops.acf").write_text("ASG(DEFAULT) { RULE(1, READ) }\n")
    text = (
        "stages:\n  c:\n    type: consumer\n    input-channel: pvapy:image\n"
        "    access-security-file: ops.acf\n" + SIM
    )
    wf = load_workflow(write(sub, text))
    assert f"--access-security-file={sub / 'ops.acf'}" in wf.stages[0].argv
    err = refused(tmp_path, text.replace("ops.acf", "nothere.acf"))
    assert err.line == 5 and "nothere.acf" in str(err)


def test_bad_processor_args_are_refused_before_start(tmp_path):
    err = refused(
        tmp_path,
        "stages:\n  c:\n    type: consumer\n    input-channel: pvapy:image\n"
        "    processor-class: pvhpc.processors.AdOutputFileProcessor\n"
        f"    processor-args: {{outputDirectory: {tmp_path}, outputFileNameFormat: a.bad}}\n" + SIM,
    )
    assert err.line == 6 and "extension .bad" in str(err)


def test_report_format_is_managed_by_run(tmp_path):
    err = refused(
        tmp_path,
        "stages:\n  c:\n    type: consumer\n    input-channel: pvapy:image\n"
        "    report-format: text\n" + SIM,
    )
    assert err.line == 5 and "report-format" in str(err)


def test_variables_from_the_environment(tmp_path):
    text = "stages:\n  sim:\n    type: sim\n    channel-name: ${CH:-dflt}:image\n"
    wf = load_workflow(write(tmp_path, text), environ={"CH": "env"})
    assert wf.stages[0].args.channel_name == "env:image"
    wf = load_workflow(write(tmp_path, text), environ={})
    assert wf.stages[0].args.channel_name == "dflt:image"
    path = write(tmp_path, "stages:\n  sim:\n    type: sim\n    channel-name: ${NOPE}\n")
    with pytest.raises(WorkflowError) as info:
        load_workflow(path, environ={})
    assert info.value.line == 4 and "${NOPE} is not set" in str(info.value)


def test_values_become_command_line_options(tmp_path):
    wf = load_workflow(
        write(
            tmp_path,
            """\
            stages:
              c:
                type: collector
                producer-id-list: [1, 2]
                input-channel: p:*:output
                metadata-channels: [pva://x, pva://y]
                processor-args: {a: 1}
                disable-curses: true
              p:
                type: consumer
                input-channel: pvapy:image
                output-channel: p:*:output
                n-consumers: 2
              sim:
                type: sim
                metadata-pv: [pva://x, pva://y]
            """,
        )
    )
    c = wf.stages[0]
    assert "--producer-id-list=1,2" in c.argv
    assert "--metadata-channels=pva://x,pva://y" in c.argv
    assert '--processor-args={"a": 1}' in c.argv
    assert "--disable-curses" in c.argv
    assert "--report-format=json" in c.argv and "--report-period=1.0" in c.argv
    assert "--status-channel=_" in c.argv
    assert c.instances[0].inputs == ["p:1:output", "p:2:output"]
    assert c.instances[0].status == "pvapy:collector:1:status"


def test_channel_prefix_reaches_every_channel(tmp_path):
    wf = load_workflow(
        write(
            tmp_path,
            """\
            external: [ca://ext]
            stages:
              c:
                type: consumer
                input-channel: pvapy:image
                output-channel: c:*:output
                metadata-channels: pva://x,ca://ext
              sim:
                type: sim
                metadata-pv: pva://x
            """,
        ),
        channel_prefix="T:",
    )
    c, sim = wf.stages
    assert c.instances[0].inputs == ["T:pvapy:image"]
    assert c.instances[0].output == "T:c:1:output"
    assert c.instances[0].status == "T:pvapy:consumer:1:status"
    assert {str(e) for e, _ in c.requires} == {"T:pvapy:image", "T:x", "ca://T:ext"}
    assert sim.args.channel_name == "T:pvapy:image"


def test_start_levels_upstream_first_sources_last(tmp_path):
    wf = load_workflow(os.path.join(WORKFLOWS, "demo.yaml"))
    assert [[s.name for s in level] for level in wf.start_levels()] == [
        ["process"],
        ["collect"],
        ["write"],
        ["sim"],
    ]
    assert [s.name for s in wf.stop_order()] == ["sim", "process", "collect", "write"]


def test_consumer_sets(tmp_path):
    # Two named distributor sets of one group share the stream: one loss check, in
    # which the members of a set are copies of each other.
    wf = load_workflow(os.path.join(WORKFLOWS, "consumer-sets.yaml"))
    (sets,) = wf.consumer_sets()
    assert [(s.name, i) for s, i in sets.members] == [
        ("set-a", 1),
        ("set-a", 2),
        ("set-b", 3),
        ("set-b", 4),
    ]
    assert sets.copies == ["A", "A", "B", "B"]
    assert sets.label == "set-a + set-b (distributor sets A, B)"
    wf = load_workflow(os.path.join(WORKFLOWS, "distribution.yaml"))
    (sets,) = wf.consumer_sets()
    assert sets.copies == [None, None] and sets.label == "consumers (distributor)"
    wf = load_workflow(os.path.join(WORKFLOWS, "multiple-consumers.yaml"))
    assert [len(s.members) for s in wf.consumer_sets()] == [1, 1]
    wf = load_workflow(os.path.join(WORKFLOWS, "split-stitch.yaml"))
    collector = wf.consumer_sets()[-1]
    assert collector.channels == [f"process:{i}:output" for i in (1, 2, 3, 4)]


@pytest.fixture(scope="module")
def stream_key(tmp_path_factory):
    from Crypto.PublicKey import RSA

    path = tmp_path_factory.mktemp("key") / "stream_key"
    path.write_bytes(RSA.generate(2048).export_key())
    return str(path)


@pytest.mark.parametrize(
    "path", sorted(glob.glob(os.path.join(WORKFLOWS, "*.yaml"))), ids=os.path.basename
)
def test_every_example_workflow_checks(path, stream_key, monkeypatch, tmp_path):
    text = open(path).read()
    if "type: mirror" in text and not HAS_MIRROR:
        pytest.skip("pvhpc mirror is not installed yet")
    monkeypatch.setenv("STREAM_KEY", stream_key)
    monkeypatch.chdir(tmp_path)  # writers' output directories are made here
    wf = load_workflow(path)
    assert wf.network == "loopback"
    assert any(s.is_source for s in wf.stages)


def test_cli_refusal_is_one_line_exit_2(tmp_path):
    path = write(tmp_path, "stages:\n  sim:\n    type: sim\n    frame-rat: 3\n")
    out = subprocess.run(
        [sys.executable, "-m", "pvhpc", "run", path, "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0, out.stderr
    assert out.stderr.startswith(f"pvhpc run: error: {path}:4: stage 'sim': unknown option")
    assert "Traceback" not in out.stderr


def test_cli_check_prints_the_plan():
    out = subprocess.run(
        [sys.executable, "-m", "pvhpc", "run", os.path.join(WORKFLOWS, "demo.yaml"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "start order:" in out.stdout and "pvhpc sim --channel-name=demo:image" in out.stdout


MIRROR_TWO = """\
external: [det:x, det:y]
stages:
  mirror:
    type: mirror
    channel-map: (mx,det:x,pva,100),(my,det:y,pva,100)
  px:
    type: consumer
    input-channel: mx
    status-channel: px:*:status
    control-channel: px:*:control
    n-consumers: 2
    distributor-updates: 1
{group_x}  py:
    type: consumer
    input-channel: my
    status-channel: py:*:status
    control-channel: py:*:control
    n-consumers: 2
    distributor-updates: 1
{group_y}"""


@pytest.mark.parametrize(
    "group_x, group_y, refused_",
    [
        ("    distributor-group: g\n", "    distributor-group: g\n", True),
        ("    distributor-group: g\n", "    distributor-group: h\n", False),
        ("", "", False),  # each named after its channel
    ],
    ids=["same", "different", "default"],
)
def test_consumers_of_two_mirrored_channels_in_one_distributor_group(
    tmp_path, group_x, group_y, refused_
):
    """The distributor's groups are server-wide (tests/e2e/test_distributor_groups.py)."""
    text = MIRROR_TWO.format(group_x=group_x, group_y=group_y)
    if not refused_:
        load_workflow(write(tmp_path, text))
        return
    err = refused(tmp_path, text)
    assert err.line == 21, str(err)
    assert "stage 'py' reads my and stage 'px' reads mx, both served by stage 'mirror'" in str(err)
    assert "same group 'g'" in str(err) and "its own distributor-group" in str(err)
