"""Reading a workflow file: YAML whose mappings remember the line of every key, so that
every mistake can be reported as ``file:line:``."""

from __future__ import annotations

from typing import Any

import yaml

from .model import WorkflowError

__all__ = ["read_yaml"]


class _Map(dict):
    """A mapping from the file that remembers the line of itself and of each key."""

    line: int = 0
    lines: dict

    def line_of(self, key: Any) -> int:
        return self.lines.get(key, self.line)


class _Duplicate(Exception):
    def __init__(self, line: int, key: Any):
        self.line = line
        self.key = key


class _Loader(yaml.SafeLoader):
    pass


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    merge_tag = "tag:yaml.org,2002:merge"
    n_own = sum(1 for k, _ in node.value if k.tag != merge_tag)
    loader.flatten_mapping(node)
    n_merged = len(node.value) - n_own
    result = _Map()
    result.line = node.start_mark.line + 1
    result.lines = {}
    own_keys: set = set()
    for i, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        if i >= n_merged:
            if key in own_keys:
                raise _Duplicate(key_node.start_mark.line + 1, key)
            own_keys.add(key)
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[key] = key_node.start_mark.line + 1
    return result


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)


def read_yaml(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise WorkflowError(path, None, f"cannot read the workflow file: {exc.strerror}") from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except _Duplicate as exc:
        raise WorkflowError(path, exc.line, f"key {exc.key!r} is given twice") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise WorkflowError(path, line, f"not valid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise WorkflowError(path, None, f"not valid YAML: {exc}") from None
