"""User mistakes on every command's options, each run as the real command.

Every case starts ``python -m pvhpc <command> ...`` as a subprocess and holds it to
SPEC §3: a user mistake ends the command at once with exit status 2 and one line on
stderr that names the bad option or value, never a traceback. The commands are run
with bad options only, so none of them gets as far as opening a channel; a command
that does start anyway is stopped by the timeout and the case fails.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PROCESSORS = """
from pvhpc import UserDataProcessor


class Good(UserDataProcessor):
    pass


class NoProcess:
    def __init__(self, configDict={}):
        pass


class BadInit(UserDataProcessor):
    def __init__(self, configDict={}):
        super().__init__(configDict)
        raise ValueError("threshold must be given")
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """Files the cases refer to as ``{name}``: processor files, bad frame files."""
    d = tmp_path_factory.mktemp("bad-input")
    (d / "procs.py").write_text(PROCESSORS)
    (d / "syntax.py").write_text("class Broken(:\n    pass\n")
    (d / "import_fails.py").write_text("raise RuntimeError('no detector here')\n")
    (d / "notes.txt").write_text("not frames\n")
    (d / "corrupt.npy").write_bytes(b"\x93NUMPYgarbage")
    (d / "fake.h5").write_bytes(b"not hdf5 either")
    (d / "text.npy").write_text("frame 1\nframe 2\n")
    np.save(d / "objects.npy", np.array([{"frame": 1}], dtype=object), allow_pickle=True)
    np.save(d / "line.npy", np.arange(10, dtype=np.uint8))
    np.save(d / "complex.npy", np.zeros((2, 4, 4), dtype=np.complex64))
    np.save(d / "empty.npy", np.zeros((0, 4, 4), dtype=np.uint8))
    (d / "nonpy").mkdir()
    (d / "bad.acf").write_text("ASG(DEFAULT) {\n  RULE(1, READ\n")
    (d / "short_token").write_text("abc\n")
    return {
        "bad_acf": str(d / "bad.acf"),
        "short_token": str(d / "short_token"),
        "procs": str(d / "procs.py"),
        "syntax": str(d / "syntax.py"),
        "import_fails": str(d / "import_fails.py"),
        "missing_py": str(d / "no_such_processor.py"),
        "dir": str(d),
        "notes": str(d / "notes.txt"),
        "corrupt": str(d / "corrupt.npy"),
        "fake_h5": str(d / "fake.h5"),
        "text_npy": str(d / "text.npy"),
        "objects": str(d / "objects.npy"),
        "line": str(d / "line.npy"),
        "complex": str(d / "complex.npy"),
        "empty": str(d / "empty.npy"),
        "nonpy": str(d / "nonpy"),
        "missing_npy": str(d / "no_such_frames.npy"),
        "bad_log": str(d / "no_such_dir" / "run.log"),
    }


IC = ("-ic", "img")  # consumer input channel
COL = ("-ic", "proc:*:output", "-pid", "1,2")  # collector producers

# (command, arguments, words the error line must contain)
CASES = [
    # -- consumer: unknown options and missing ones --------------------------------
    ("consumer", [*IC, "--bogus"], ["--bogus"]),
    ("consumer", ["--input-chanel", "img"], ["--input-chanel"]),
    ("consumer", [*IC, "-x"], ["-x"]),
    ("consumer", [], ["--input-channel"]),
    ("consumer", ["-ic", " "], ["--input-channel"]),
    # -- consumer: numbers that are not numbers, or out of range ------------------
    ("consumer", [*IC, "-nc", "two"], ["--n-consumers", "two"]),
    ("consumer", [*IC, "-nc", "0"], ["--n-consumers", "0"]),
    ("consumer", [*IC, "-id", "first"], ["--consumer-id", "first"]),
    ("consumer", [*IC, "-sqs", "many"], ["--server-queue-size", "many"]),
    ("consumer", [*IC, "-sqs", "-1"], ["--server-queue-size", "-1"]),
    ("consumer", [*IC, "-rqs", "1.5"], ["--receiver-queue-size", "1.5"]),
    ("consumer", [*IC, "-ao", "ten"], ["--accumulate-objects", "ten"]),
    ("consumer", [*IC, "-ao", "5"], ["--accumulate-objects", "--receiver-queue-size"]),
    ("consumer", [*IC, "-at", "soon"], ["--accumulation-timeout", "soon"]),
    ("consumer", [*IC, "-at", "0"], ["--accumulation-timeout", "0"]),
    ("consumer", [*IC, "-at", "nan"], ["--accumulation-timeout", "nan"]),
    ("consumer", [*IC, "-oo", "x"], ["--oid-offset", "x"]),
    ("consumer", [*IC, "-siu", "one"], ["--skip-initial-updates", "one"]),
    ("consumer", [*IC, "-siu", "-1"], ["--skip-initial-updates", "-1"]),
    ("consumer", [*IC, "-du", "x"], ["--distributor-updates", "x"]),
    ("consumer", [*IC, "-du", "0"], ["--distributor-updates", "0"]),
    ("consumer", [*IC, "-nds", "two"], ["--n-distributor-sets", "two"]),
    ("consumer", [*IC, "-nds", "0"], ["--n-distributor-sets", "0"]),
    ("consumer", [*IC, "-rt", "soon"], ["--runtime", "soon"]),
    ("consumer", [*IC, "-rt", "nan"], ["--runtime", "nan"]),
    ("consumer", [*IC, "-rp", "often"], ["--report-period", "often"]),
    ("consumer", [*IC, "-rp", "inf"], ["--report-period", "inf"]),
    # -- consumer: choices, logging ------------------------------------------------
    ("consumer", [*IC, "-rf", "xml"], ["--report-format", "xml"]),
    ("consumer", [*IC, "-rs", "bogus"], ["--report-stats", "bogus"]),
    ("consumer", [*IC, "-rs", "receiver,nope"], ["--report-stats", "nope"]),
    ("consumer", [*IC, "-ll", "chatty"], ["--log-level", "chatty"]),
    ("consumer", [*IC, "-lf", "{bad_log}"], ["--log-file", "{bad_log}"]),
    ("consumer", [*IC, "-ifs", "zz", "-sc", "c:*:status"], ["--id-format-spec", "zz"]),
    # -- consumer: processor arguments (JSON) --------------------------------------
    ("consumer", [*IC, "-pa", "{bad"], ["--processor-args", "{bad"]),
    ("consumer", [*IC, "-pa", "{'a': 1}"], ["--processor-args", "{'a': 1}"]),
    ("consumer", [*IC, "-pa", "[1, 2]"], ["--processor-args", "[1, 2]"]),
    ("consumer", [*IC, "-pa", '"text"'], ["--processor-args", '"text"']),
    ("consumer", [*IC, "-pa", ""], ["--processor-args"]),
    ("consumer", [*IC, "-pa", '{"objectIdOffset": "x"}'], ["objectIdOffset", "'x'"]),
    # -- consumer: processor file and class ----------------------------------------
    ("consumer", [*IC, "-pf", "{missing_py}", "-pc", "X"], ["--processor-file", "{missing_py}"]),
    ("consumer", [*IC, "-pf", "{dir}", "-pc", "X"], ["--processor-file", "{dir}"]),
    ("consumer", [*IC, "-pf", "{notes}", "-pc", "X"], ["--processor-file", "{notes}"]),
    ("consumer", [*IC, "-pf", "{syntax}", "-pc", "Broken"], ["{syntax}", "SyntaxError"]),
    ("consumer", [*IC, "-pf", "{import_fails}", "-pc", "X"], ["no detector here"]),
    ("consumer", [*IC, "-pf", "{procs}"], ["--processor-class"]),
    ("consumer", [*IC, "-pf", "{procs}", "-pc", "Missing"], ["--processor-class", "Missing"]),
    ("consumer", [*IC, "-pf", "{procs}", "-pc", "NoProcess"], ["NoProcess", "process"]),
    ("consumer", [*IC, "-pf", "{procs}", "-pc", "BadInit"], ["BadInit", "threshold"]),
    ("consumer", [*IC, "-pc", "NotABuiltin"], ["--processor-class", "NotABuiltin"]),
    ("consumer", [*IC, "-pc", "no_such_pkg.mod.Cls"], ["--processor-class", "no_such_pkg.mod"]),
    ("consumer", [*IC, "-pc", "pvhpc.processors.NoSuch"], ["--processor-class", "NoSuch"]),
    # -- consumer: several consumers: checked in the parent, before any spawn --------
    ("consumer", [*IC, "-nc", "2", "-pc", "Missing"], ["--processor-class", "Missing"]),
    ("consumer", [*IC, "-nc", "2", "-pf", "{procs}", "-pc", "NoProcess"], ["process"]),
    ("consumer", [*IC, "-nc", "2", "-pf", "{procs}", "-pc", "BadInit"], ["threshold"]),
    ("consumer", [*IC, "-nc", "2", "-pa", "{x"], ["--processor-args", "{x"]),
    # -- consumer: id lists and metadata channel lists ------------------------------
    ("consumer", [*IC, "-cid", "1,,2"], ["--consumer-id-list", "1,,2"]),
    ("consumer", [*IC, "-cid", "a,b"], ["--consumer-id-list", "a,b"]),
    ("consumer", [*IC, "-cid", "1,1"], ["--consumer-id-list", "1,1"]),
    ("consumer", [*IC, "-cid", "range(1,3"], ["--consumer-id-list", "range(1,3"]),
    ("consumer", [*IC, "-cid", "range(5,1)"], ["--consumer-id-list", "range(5,1)"]),
    ("consumer", [*IC, "-cid", "range(1,4,0)"], ["--consumer-id-list", "range(1,4,0)"]),
    ("consumer", [*IC, "-cid", "range(1,2,3,4)"], ["--consumer-id-list"]),
    ("consumer", [*IC, "-mc", "http://x"], ["--metadata-channels", "http://x"]),
    ("consumer", [*IC, "-mc", "pva://"], ["--metadata-channels", "pva://"]),
    ("consumer", [*IC, "-mc", ",,"], ["--metadata-channels"]),
    # -- collector ---------------------------------------------------------------------
    ("collector", [*COL, "--bogus"], ["--bogus"]),
    ("collector", ["-pid", "1,2"], ["--input-channel"]),
    ("collector", ["-ic", "proc:output", "-pid", "1,2"], ["--input-channel", "proc:output"]),
    ("collector", ["-ic", "p:*", "-pid", "1,x"], ["--producer-id-list", "1,x"]),
    ("collector", ["-ic", "p:*", "-pid", "1,1"], ["--producer-id-list", "1,1"]),
    ("collector", ["-ic", "p:*", "-pid", "range(1,)"], ["--producer-id-list", "range(1,)"]),
    ("collector", ["-ic", "p:*", "-pid", "range(3,1)"], ["--producer-id-list", "range(3,1)"]),
    ("collector", ["-ic", "p:*", "-pid", ""], ["--producer-id-list"]),
    ("collector", [*COL, "-ccs", "many"], ["--collector-cache-size", "many"]),
    ("collector", [*COL, "-id", "x"], ["--collector-id", "x"]),
    ("collector", [*COL, "-rqs", "x"], ["--receiver-queue-size", "x"]),
    ("collector", [*COL, "-rt", "nan"], ["--runtime", "nan"]),
    ("collector", [*COL, "-pa", "{bad"], ["--processor-args", "{bad"]),
    ("collector", [*COL, "-pf", "{missing_py}", "-pc", "X"], ["--processor-file"]),
    ("collector", [*COL, "-pf", "{procs}", "-pc", "Missing"], ["--processor-class", "Missing"]),
    ("collector", [*COL, "-pf", "{procs}", "-pc", "NoProcess"], ["NoProcess", "process"]),
    ("collector", [*COL, "-pf", "{procs}", "-pc", "BadInit"], ["threshold"]),
    ("collector", [*COL, "-mc", "ftp://x"], ["--metadata-channels", "ftp://x"]),
    ("collector", [*COL, "-ll", "loud"], ["--log-level", "loud"]),
    ("collector", [*COL, "-lf", "{bad_log}"], ["--log-file"]),
    # -- simulator ----------------------------------------------------------------------
    ("sim", ["--bogus"], ["--bogus"]),
    ("sim", ["-dt", "uint12"], ["--datatype", "uint12"]),
    ("sim", ["-dt", "complex64"], ["--datatype", "complex64"]),
    ("sim", ["-nx", "abc"], ["-nx", "abc"]),
    ("sim", ["-ny", "0"], ["-ny", "0"]),
    ("sim", ["-fps", "fast"], ["--frame-rate", "fast"]),
    ("sim", ["-fps", "0"], ["--frame-rate", "0"]),
    ("sim", ["-rt", "x"], ["--runtime", "x"]),
    ("sim", ["-cm", "7"], ["--color-mode", "7"]),
    ("sim", ["-std", "-1"], ["--start-delay", "-1"]),
    ("sim", ["-mn", "10", "-mx", "5"], ["--min-value", "10"]),
    ("sim", ["-cd", "zip"], ["--compression-codec", "zip"]),
    ("sim", ["-if", "{missing_npy}"], ["--input-file", "{missing_npy}"]),
    ("sim", ["-if", "{notes}"], ["--input-file", "{notes}"]),
    ("sim", ["-if", "{corrupt}"], ["--input-file", "{corrupt}"]),
    ("sim", ["-if", "{text_npy}"], ["--input-file", "not a .npy file"]),
    ("sim", ["-if", "{objects}"], ["--input-file", "Python objects"]),
    ("sim", ["-if", "{fake_h5}", "-hds", "data"], ["--input-file", "{fake_h5}"]),
    ("sim", ["-if", "{line}"], ["--input-file", "(10,)"]),
    ("sim", ["-if", "{complex}"], ["--input-file", "complex64"]),
    ("sim", ["-if", "{empty}"], ["--input-file", "no frames"]),
    ("sim", ["-id", "{missing_npy}"], ["--input-directory"]),
    ("sim", ["-id", "{nonpy}"], ["--input-directory", "{nonpy}"]),
    ("sim", ["-hds", "data"], ["--hdf5-dataset"]),
    ("sim", ["-mpv", "http://x"], ["--metadata-pv", "http"]),
    ("sim", ["-mpv", "pva://a,,b"], ["--metadata-pv"]),
    ("sim", ["-mpv", "pva://x,ca://x"], ["--metadata-pv", "'x'"]),
    ("sim", ["-ll", "chatty"], ["--log-level", "chatty"]),
    ("sim", ["-lf", "{bad_log}"], ["--log-file"]),
    # -- mirror ---------------------------------------------------------------------------
    ("mirror", [], ["--channel-map"]),
    ("mirror", ["-cm", "(a,b)", "--bogus"], ["--bogus"]),
    ("mirror", ["--chanel-map", "(a,b)"], ["--chanel-map"]),
    ("mirror", ["-cm", "(a,b"], ["--channel-map", "(a,b"]),
    ("mirror", ["-cm", "a,b"], ["--channel-map"]),
    ("mirror", ["-cm", "(a)"], ["--channel-map", "(a)"]),
    ("mirror", ["-cm", "(a,b,http)"], ["--channel-map", "http"]),
    ("mirror", ["-cm", "(a,b,pva,x)"], ["--channel-map", "'x'"]),
    ("mirror", ["-cm", "(a,b,pva,-1)"], ["--channel-map", "-1"]),
    ("mirror", ["-cm", "(a,b),(a,c)"], ["--channel-map", "'a'"]),
    ("mirror", ["-cm", "(a,b,pva,0,2)"], ["--channel-map"]),
    ("mirror", ["-cm", "(a,b) junk"], ["--channel-map", "junk"]),
    ("mirror", ["-cm", "(a,b)", "-rt", "x"], ["--runtime", "x"]),
    ("mirror", ["-cm", "(a,b)", "-rp", "nan"], ["--report-period", "nan"]),
    ("mirror", ["-cm", "(a,b)", "-ll", "chatty"], ["--log-level", "chatty"]),
    ("mirror", ["-cm", "(a,b)", "-lf", "{bad_log}"], ["--log-file"]),
    # -- access security of a stage's control channel -----------------------------------
    ("consumer", [*IC, "--access-security-file", "{missing_npy}"], ["--access-security-file"]),
    ("collector", [*COL, "--access-security-file", "{dir}"], ["--access-security-file", "{dir}"]),
    ("consumer", [*IC, "--access-security-file", "{bad_acf}"], ["{bad_acf}", "access security"]),
    # -- the dashboard ------------------------------------------------------------------
    ("dashboard", [], ["patterns", "--workflow"]),
    ("dashboard", ["x:*:status", "--web", "nowhere"], ["--web", "nowhere"]),
    ("dashboard", ["x:*:status", "--web", "70000"], ["--web", "70000"]),
    ("dashboard", ["x:*:status", "--thumbnail-period", "0.1"], ["--thumbnail-period", "0.1"]),
    ("dashboard", ["x:*:status", "--token-file", "{missing_npy}"], ["--token-file"]),
    ("dashboard", ["x:*:status", "--token-file", "{short_token}"], ["--token-file"]),
    ("dashboard", ["x:*:status", "--read-only", "--token-file", "{notes}"], ["--read-only"]),
    ("dashboard", ["x:*:status", "--workflow", "{notes}"], ["--workflow"]),
    ("dashboard", ["--workflow", "{notes}"], ["{notes}"]),
    ("run", ["{notes}", "--read-only"], ["--read-only", "--web"]),
    ("run", ["{notes}", "--web", "1:2:3"], ["--web", "1:2:3"]),
    # -- the pvhpc front command ---------------------------------------------------------
    ("frobnicate", [], ["frobnicate"]),
]


def _case_id(case) -> str:
    command, args, _ = case
    return f"{command} {' '.join(args)}".strip()


def _fill(text: str, files: dict) -> str:
    """``{name}`` → the path of that file; anything else (``{bad`` JSON) as it is."""
    name = text[1:-1] if text.startswith("{") and text.endswith("}") else None
    return files[name] if name in files else text


def run_command(command: str, args: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
    try:
        return subprocess.run(
            [sys.executable, "-m", "pvhpc", command, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"pvhpc {command} {args} did not end within {timeout}s: it took the mistake "
            f"for a valid command line\nstdout: {exc.stdout}\nstderr: {exc.stderr}"
        ) from None


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_user_mistake_is_one_line_and_status_2(case, files):
    command, args, words = case
    args = [_fill(a, files) for a in args]
    words = [_fill(w, files) for w in words]
    done = run_command(command, args)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    assert len(lines) == 1, f"expected one line on stderr, got:\n{done.stderr}"
    assert "error" in lines[0]
    for word in words:
        assert word in lines[0], f"{word!r} not named in: {lines[0]}"
