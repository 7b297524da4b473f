"""Workflows: a whole streaming workflow from one YAML file, run and checked.

:func:`~pvhpc.workflow.loader.load_workflow` reads and checks a file into a
:class:`~pvhpc.workflow.model.Workflow`; :class:`~pvhpc.workflow.runner.Runner`
starts, watches and stops its stages; :mod:`~pvhpc.workflow.accounting` holds the
one loss formula (SPEC §5) that the runner, the tests and the benchmarks use;
:mod:`~pvhpc.workflow.process` starts and stops one stage process and reads its
JSON reports.
"""

from .loader import STAGE_TYPES, load_workflow
from .model import ConsumerSet, Endpoint, Instance, StageSpec, Workflow, WorkflowError

__all__ = [
    "load_workflow",
    "STAGE_TYPES",
    "Workflow",
    "WorkflowError",
    "StageSpec",
    "Instance",
    "Endpoint",
    "ConsumerSet",
]
