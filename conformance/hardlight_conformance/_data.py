"""The data files shipped with the conformance package: vectors and recorded traffic."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

from hardlight_core import (
    Err,
    NewEvent,
    Ok,
    RpcHandlerError,
    RPCRequest,
    RPCResponse,
    ServerMessage,
    StateChange,
    StateUpdate,
    Topic,
)

__all__ = [
    "envelope_from_json",
    "iter_recorded_messages",
    "load_json",
    "traffic_dir",
    "vectors_dir",
]


def vectors_dir() -> Path:
    """Folder of the packaged vector files (copied from the reference's generators)."""
    return Path(str(files("hardlight_conformance") / "data" / "vectors"))


def traffic_dir() -> Path:
    """Folder of the packaged sessions recorded between the Rust client and server."""
    return Path(str(files("hardlight_conformance") / "data" / "traffic"))


def load_json(path: Path) -> Any:
    """Read one JSON file."""
    with path.open(encoding="utf-8") as f:
        return json.load(f)


def envelope_from_json(kind: str, value: Any) -> RPCRequest | ServerMessage:
    """Build an envelope message from its JSON form in ``messages.json``."""
    ((variant, body),) = value.items()
    if kind == "ClientMessage" and variant == "RPCRequest":
        return RPCRequest(body["id"], bytes.fromhex(body["internal"]))
    if variant == "RPCResponse":
        output = body["output"]
        if "Ok" in output:
            return RPCResponse(body["id"], Ok(bytes.fromhex(output["Ok"])))
        return RPCResponse(body["id"], Err(RpcHandlerError[output["Err"]]))
    if variant == "NewEvent":
        topic = body["topic"]
        return NewEvent(
            Topic(bytes.fromhex(topic["inner"]), topic["is_string"]),
            bytes.fromhex(body["payload"]),
        )
    if variant == "StateChange":
        return StateChange([StateUpdate(u["index"], bytes.fromhex(u["data"])) for u in body])
    raise ValueError(f"unknown {kind} variant {variant!r}")


def iter_recorded_messages() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every binary frame of the recorded traffic: (session, "c2s" | "s2c", frame)."""
    for path in sorted(traffic_dir().glob("*.decoded.json")):
        session = path.name.removesuffix(".decoded.json")
        for conn in load_json(path)["connections"]:
            for direction in ("c2s", "s2c"):
                for frame in conn.get(f"{direction}_frames") or []:
                    if frame.get("inflated_hex") is not None:
                        yield session, direction, frame
