"""The optional mypyc build (docs/compiled.md).

The static checks run everywhere; the checks of the compiled modules themselves skip unless
the compiled build is the one imported (``HARDLIGHT_EXPECT_COMPILED=1``, as CI's second
virtualenv sets, turns that skip into a failure).
"""

from __future__ import annotations

import ast
import importlib
import os
from pathlib import Path

import pytest

from hardlight_core._frame import Frame, Opcode
from hardlight_core._framing import FrameReader, frame_bytes

ROOT = Path(__file__).resolve().parents[2]


def _compiled_modules() -> list[str]:
    """``COMPILED_MODULES`` from setup.py, as module names."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "COMPILED_MODULES" for t in node.targets
        ):
            paths = ast.literal_eval(node.value)
            return [p.removesuffix(".py").replace("/", ".") for p in paths]
    raise AssertionError("setup.py has no COMPILED_MODULES")


MODULES = _compiled_modules()


def _is_compiled(name: str) -> bool:
    return not str(importlib.import_module(name).__file__).endswith(".py")


def test_the_compiled_modules_are_the_codec_and_the_frame_reader() -> None:
    assert MODULES == ["hardlight_core._codec", "hardlight_core._framing"]


@pytest.mark.parametrize("name", MODULES)
def test_no_class_statement_with_keywords_in_a_compiled_module(name: str) -> None:
    # mypyc drops a class statement's keywords (python/mypy#21938): a msgspec Struct with
    # frozen=True would silently lose it once compiled. Such classes go in a module that
    # stays interpreted (as Frame and Opcode live in _frame).
    path = ROOT / (name.replace(".", "/") + ".py")
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef):
            assert not node.keywords, f"{name}.{node.name}: class keywords are lost by mypyc"


def test_frames_are_frozen() -> None:
    assert Frame.__struct_config__.frozen
    frame = FrameReader(expect_masked=False, max_message_size=100).feed(
        frame_bytes(Opcode.BINARY, b"abc", mask=False)
    )[0]
    assert hash(frame) == hash(Frame(Opcode.BINARY, b"abc"))
    with pytest.raises(AttributeError):
        frame.payload = b""  # type: ignore[misc]


def _require_compiled() -> None:
    if not all(_is_compiled(name) for name in MODULES):
        if os.environ.get("HARDLIGHT_EXPECT_COMPILED", "") not in ("", "0"):
            pytest.fail("HARDLIGHT_EXPECT_COMPILED is set but the pure-Python modules loaded")
        pytest.skip("the compiled build is not the one imported")


def test_the_compiled_build_loads_every_compiled_module() -> None:
    _require_compiled()
    for name in MODULES:
        assert str(importlib.import_module(name).__file__).endswith(".so"), name
    # everything else stays interpreted
    assert str(importlib.import_module("hardlight_core._frame").__file__).endswith(".py")
    assert str(importlib.import_module("hardlight_core._envelope").__file__).endswith(".py")
