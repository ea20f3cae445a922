"""hardlight_support.otel: a span per call, recorded by opentelemetry-sdk's in-memory exporter."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "adapters"))

from hl_harness import SERVER_RUNTIMES, Probe, ProbeHandler, running

import hardlight_threads
from hardlight_core import HandlerPanicked
from hardlight_support import ClientConfig, ServerConfig

pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk is not installed")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

from hardlight_support.otel import instrument


@pytest.mark.parametrize("runtime", SERVER_RUNTIMES)
def test_a_span_per_call(runtime: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    config = ServerConfig.self_signed("localhost:0")
    assert config.fingerprint is not None
    with running(runtime, config, ProbeHandler) as server:
        hooks = instrument(server.server, tracer_provider=provider)
        client = hardlight_threads.Client(
            Probe, ClientConfig.pinned(f"localhost:{server.port}", config.fingerprint)
        )
        client.connect()
        try:
            assert client.call("echo", 9) == 9
            with pytest.raises(HandlerPanicked):
                client.call("boom")
            server.server.remove_hooks(hooks)
            assert client.call("echo", 10) == 10  # no longer traced
        finally:
            client.disconnect()
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["hardlight/Probe.echo", "hardlight/Probe.boom"]
    echo, boom = spans
    assert echo.kind is SpanKind.SERVER
    attributes = dict(echo.attributes or {})
    assert attributes["rpc.system"] == "hardlight"
    assert attributes["rpc.service"] == "Probe"
    assert attributes["rpc.method"] == "echo"
    assert attributes["hardlight.outcome"] == "ok"
    assert attributes["network.peer.address"] == "127.0.0.1"
    assert isinstance(attributes["hardlight.call_id"], int)
    assert echo.status.status_code is StatusCode.UNSET
    assert boom.attributes is not None and boom.attributes["hardlight.outcome"] == "HandlerPanicked"
    assert boom.status.status_code is StatusCode.ERROR
    assert [e.name for e in boom.events] == ["exception"]
    assert boom.events[0].attributes is not None
    assert boom.events[0].attributes["exception.type"] == "ValueError"
    assert echo.end_time is not None and echo.start_time is not None
    assert echo.end_time >= echo.start_time
