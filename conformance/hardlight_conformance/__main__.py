"""``python -m hardlight_conformance``: see :mod:`hardlight_conformance.cli`."""

import sys

from .cli import main

sys.exit(main())
