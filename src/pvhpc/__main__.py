"""``python -m pvhpc …``: the same as the ``pvhpc`` command."""

from .cli.main import entry

entry()
