"""``python -m pvhpc …``: the same as the ``pvhpc`` command."""

import sys

from .cli.main import main

sys.exit(main())
