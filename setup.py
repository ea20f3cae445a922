"""Build hook. Pure Python by default; ``HARDLIGHT_COMPILE=1`` compiles the hot path with mypyc.

Everything else about the package lives in pyproject.toml. The compiled build needs mypy
(which ships mypyc) and a C compiler in the build environment, so it is built without
build isolation (docs/compiled.md)::

    python -m pip install 'mypy>=1.10' 'setuptools>=68' wheel
    HARDLIGHT_COMPILE=1 python -m pip install --no-build-isolation .

Editable installs are always pure Python: compiled modules would be written next to the
sources and shadow them.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup

# Measured to win clearly (docs/compiled.md); the rest stays interpreted.
COMPILED_MODULES = [
    "hardlight_core/_codec.py",
    "hardlight_core/_framing.py",
]


def _ext_modules() -> list[object]:
    if os.environ.get("HARDLIGHT_COMPILE", "0").strip() in ("", "0"):
        return []
    if any(cmd in sys.argv for cmd in ("editable_wheel", "develop")):
        print("HARDLIGHT_COMPILE ignored: editable installs stay pure Python", file=sys.stderr)
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        sys.exit(
            "HARDLIGHT_COMPILE=1 needs mypyc in the build environment: "
            "python -m pip install 'mypy>=1.10' 'setuptools>=68' wheel, then "
            "HARDLIGHT_COMPILE=1 python -m pip install --no-build-isolation . "
            "(see docs/compiled.md)"
        )
    return list(mypycify(COMPILED_MODULES, opt_level="3"))


setup(ext_modules=_ext_modules())
