"""Build hook. Pure Python by default; ``HARDLIGHT_COMPILE=1`` compiles the hot path with mypyc.

Everything else about the package lives in pyproject.toml. The compiled build needs mypy
(which ships mypyc), a C compiler and hardlight's own dependencies (mypyc type-checks
against msgspec) in the build environment, so it is built without build isolation, in
two steps (docs/compiled.md)::

    python -m pip install 'mypy>=1.10' 'setuptools>=68' wheel .
    HARDLIGHT_COMPILE=1 python -m pip install --no-build-isolation --no-deps --force-reinstall .

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
    # Only when building a wheel or the extensions themselves: not for metadata or build
    # requirements, and never for an editable install (editable_wheel, develop).
    if not any(cmd in sys.argv for cmd in ("bdist_wheel", "build", "build_ext")):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        sys.exit(
            "HARDLIGHT_COMPILE=1 needs mypyc in the build environment: "
            "python -m pip install 'mypy>=1.10' 'setuptools>=68' wheel ., then "
            "HARDLIGHT_COMPILE=1 python -m pip install --no-build-isolation --no-deps "
            "--force-reinstall . (see docs/compiled.md)"
        )
    return list(mypycify(COMPILED_MODULES, opt_level="3", target_dir=BUILD_BASE + "/mypyc"))


# A compiled build keeps its own build tree, so no pure build picks up its extensions; CI
# removes it first so a module dropped from COMPILED_MODULES leaves no stale .so behind.
BUILD_BASE = "build/compiled"
EXT_MODULES = _ext_modules()
setup(
    ext_modules=EXT_MODULES,
    options={"build": {"build_base": BUILD_BASE}} if EXT_MODULES else {},
)
