"""``python -m mlpar`` is the ``mlpar`` command."""

import sys

from .cli import main

sys.exit(main())
