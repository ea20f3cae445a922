"""Cases from the rkyv oracle, kept as vectors (no cargo needed).

``data/vectors/oracle-regressions.json`` holds types and values archived by the
real rkyv 0.7.39 (``hex``; ``rkyv_accepts`` says whether ``rkyv::from_bytes``
takes its own archive back) and damaged archives with rkyv's verdict
(``expect``: ``reject`` or what rkyv re-serializes after reading them).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from hardlight_conformance._oracle import hint_for, value_from_json, values_equal
from hardlight_conformance._vectors import vectors_dir
from hardlight_core import DecodeError, codec_for

CASES: list[dict[str, Any]] = json.loads(
    (vectors_dir() / "oracle-regressions.json").read_text(encoding="utf-8"))


def _reject(tp: Any, raw: bytes) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        codec_for(tp).decode(raw)
    # raised by a check, not wrapping some other exception
    assert info.value.__cause__ is None and info.value.__context__ is None
    return info.value


@pytest.mark.parametrize("case", [c for c in CASES if "value" in c], ids=lambda c: c["name"])
def test_archived_by_rkyv(case: dict[str, Any]) -> None:
    tp = hint_for(case["type"])
    value = value_from_json(case["type"], case["value"])
    assert codec_for(tp).encode(value).hex() == case["hex"]
    raw = bytes.fromhex(case["hex"])
    if case["rkyv_accepts"]:
        assert values_equal(codec_for(tp).decode(raw), value)
    else:
        _reject(tp, raw)


@pytest.mark.parametrize("case", [c for c in CASES if "expect" in c], ids=lambda c: c["name"])
def test_damaged_archive_verdict(case: dict[str, Any]) -> None:
    tp = hint_for(case["type"])
    raw = bytes.fromhex(case["hex"])
    if case["expect"] == "reject":
        _reject(tp, raw)
    else:
        assert codec_for(tp).encode(codec_for(tp).decode(raw)).hex() == case["expect"]


def test_file_covers_both_verdicts_and_nested_options() -> None:
    assert sum(1 for c in CASES if c.get("expect") == "reject") >= 50
    assert sum(1 for c in CASES if c.get("expect", "reject") != "reject") >= 50
    assert any(c.get("rkyv_accepts") is False for c in CASES)
    assert any(c["type"] == {"option": {"option": "u8"}} for c in CASES)
