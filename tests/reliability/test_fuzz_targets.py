"""A bounded run of the fuzz targets in fuzz/ (seeds from the recorded traffic, mutated)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from hardlight_conformance._data import iter_recorded_messages, load_json, vectors_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "fuzz"))
import zlib

from fuzz_targets import TARGETS


def _seeds() -> list[bytes]:
    seeds = [bytes.fromhex(f["inflated_hex"]) for _s, _d, f in iter_recorded_messages()][:200]
    for case in load_json(vectors_dir() / "messages.json")["messages"]:
        seeds.append(bytes.fromhex(case["rkyv"]))
    return seeds


def _frames(payloads: list[bytes]) -> bytes:
    out = b""
    for p in payloads:
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        body = c.compress(p) + c.flush()
        head = bytes([0x82, 0x80 | min(len(body), 125)]) if len(body) < 126 else bytes(
            [0x82, 0x80 | 126]
        ) + len(body).to_bytes(2, "big")
        out += head + b"\0\0\0\0" + body
    return out


def _mutations(seed: bytes, rng: random.Random, n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        data = bytearray(seed)
        for _ in range(rng.randrange(1, 4)):
            op = rng.randrange(4)
            if op == 0 and data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif op == 1:
                data.insert(rng.randrange(len(data) + 1), rng.randrange(256))
            elif op == 2 and data:
                del data[rng.randrange(len(data)) :]
            else:
                data += bytes(rng.randrange(256) for _ in range(rng.randrange(8)))
        out.append(bytes(data))
    return out


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzz_target_bounded(target: str) -> None:
    rng = random.Random(f"{target}-1")
    fn = TARGETS[target]
    seeds = _seeds()
    inputs: list[bytes] = []
    for seed in seeds:
        if target == "server":
            inputs.extend(_frames([m]) for m in _mutations(seed, rng, 3))
            inputs.extend(_mutations(_frames([seed]), rng, 3))
        else:
            inputs.extend(_mutations(seed, rng, 5))
    inputs.extend(bytes(rng.randrange(256) for _ in range(rng.randrange(200))) for _ in range(300))
    for data in inputs:
        fn(data)  # anything but a typed error fails the test
