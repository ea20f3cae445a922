"""A bounded pass of the rkyv oracle: 200 random types (fixed seed) compared with
the real rkyv 0.7 built by cargo offline from Debian's librust-rkyv-dev.

Skipped when cargo or the crate sources are missing. The first run builds rkyv
and the generated program (cached under ~/.cache/hardlight-oracle, or
$HARDLIGHT_ORACLE_CACHE); later runs reuse the binary.
"""

from __future__ import annotations

import pytest

from hardlight_conformance._oracle import find_toolchain, run_oracle, rust_type

SEED = 20240612
TYPES = 200


def test_bounded_oracle_pass() -> None:
    tc = find_toolchain()
    if isinstance(tc, str):
        pytest.skip(f"rkyv oracle unavailable: {tc}")
    res = run_oracle(TYPES, SEED, mutations_per_type=8, toolchain=tc, shrink=False)
    assert res.failed == 0, "\n".join(res.lines)
    assert res.passed == TYPES
    # the pass really exercised rkyv: archives came back and damaged copies were judged
    assert all(c.rkyv is not None for c in res.cases)
    assert sum(len(c.mutated) for c in res.cases) >= TYPES * 6
    spelled = " ".join(rust_type(c.type) for c in res.cases)
    for kind in ("Option<Option<", "Vec<", "HashMap<", "Box<", "Result<", "[", "char", "f32"):
        assert kind in spelled, kind
