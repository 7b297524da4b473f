"""Loading processor classes: files, dotted paths, PvaPy names, duck typing."""

import pytest

from pvhpc import UserDataProcessor
from pvhpc.errors import UsageError
from pvhpc.loading import create_processor, load_processor_class
from pvhpc.processor import adapt_processor


def test_default_is_passthrough():
    assert load_processor_class(None, None) is UserDataProcessor


def test_pvapy_passthrough_name_maps_to_ours():
    cls = load_processor_class(None, "pvapy.hpc.userDataProcessor.UserDataProcessor")
    assert cls is UserDataProcessor


def test_class_from_file(tmp_path):
    f = tmp_path / "myproc.py"
    f.write_text(
        "class Doubler:\n    def __init__(self, configDict={}):\n        self.k = configDict.get('k', 2)\n"
        "    def process(self, pv):\n        return pv * self.k\n"
    )
    cls = load_processor_class(str(f), "Doubler")
    p = create_processor(cls, {"k": 3})
    assert p.process(2) == 6
    # duck-typed: optional methods filled in
    p.start()
    p.stop()
    p.configure({})
    p.resetStats()
    assert p.getStats() == {} and p.getStatsPvaTypes() == {}


def test_missing_file_and_class(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        load_processor_class(str(tmp_path / "nope.py"), "X")
    f = tmp_path / "p.py"
    f.write_text("class A:\n    pass\n")
    with pytest.raises(UsageError, match="class B not found"):
        load_processor_class(str(f), "B")


def test_file_with_syntax_error(tmp_path):
    f = tmp_path / "bad.py"
    f.write_text("def oops(:\n")
    with pytest.raises(UsageError, match="SyntaxError"):
        load_processor_class(str(f), "X")


def test_class_without_process():
    class NoProcess:
        def __init__(self, configDict=None):
            pass

    with pytest.raises(UsageError, match="no process"):
        adapt_processor(NoProcess())


def test_dotted_path_to_unknown_module():
    with pytest.raises(UsageError, match="cannot import module"):
        load_processor_class(None, "no_such_pkg.mod.Cls")


def test_subclass_of_pvapy_base_runs_unchanged():
    # A processor derived from PvaPy's own base class works as any duck-typed one.
    # (Imported only here, in a test, to prove compatibility; our code never imports it.)
    base = pytest.importorskip("pvapy.hpc.userDataProcessor").UserDataProcessor

    class Theirs(base):
        def process(self, pvObject):
            return pvObject + 1

    p = create_processor(Theirs, {})
    assert p.process(1) == 2
    assert isinstance(p.getStats(), dict)
