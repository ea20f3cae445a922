"""OpenTelemetry tracing for any adapter's server: one span per call.

``pip install 'hardlight[otel]'`` (``opentelemetry-api``; an SDK and exporter are the
application's choice), then::

    from hardlight_support.otel import instrument
    hooks = instrument(server)          # any adapter's Server; server.remove_hooks(hooks) undoes

Each call gets a span named ``hardlight/<Service>.<method>`` (kind SERVER) from its
arrival to its answer, with the attributes ``rpc.system`` = ``"hardlight"``,
``rpc.service``, ``rpc.method``, ``hardlight.call_id``, ``hardlight.outcome`` (``"ok"``,
an ``RpcHandlerError`` name such as ``"HandlerPanicked"``, ``"cancelled"``,
``"unanswered"``) and the peer's ``network.peer.address`` / ``network.peer.port``. A
call that did not end ``"ok"`` has status ERROR; the exception a handler raised is
recorded on its span. The span is not made current inside the handler (the server's
hooks run around it, not in its context).
"""

from __future__ import annotations

from typing import Any

try:
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "hardlight_support.otel needs opentelemetry-api: pip install 'hardlight[otel]'"
    ) from exc

from hardlight_core import CallInfo, ServerHooks

__all__ = ["instrument", "tracing_hooks"]

INSTRUMENTATION_NAME = "hardlight"


def tracing_hooks(tracer_provider: Any = None) -> ServerHooks:
    """Hooks recording a span per call with the tracer of ``tracer_provider`` (default:
    the global one); add them with ``server.add_hooks(hooks)``."""
    tracer = trace.get_tracer(INSTRUMENTATION_NAME, tracer_provider=tracer_provider)
    spans: dict[CallInfo, Any] = {}

    def on_call_start(info: CallInfo) -> None:
        attributes: dict[str, Any] = {
            "rpc.system": "hardlight",
            "rpc.service": info.service,
            "rpc.method": info.method,
            "hardlight.call_id": info.call_id,
        }
        peer = info.peer
        if isinstance(peer, tuple) and len(peer) >= 2:
            attributes["network.peer.address"] = str(peer[0])
            attributes["network.peer.port"] = int(peer[1])
        method = info.method or "(undecodable)"
        spans[info] = tracer.start_span(
            f"hardlight/{info.service}.{method}", kind=SpanKind.SERVER, attributes=attributes
        )

    def on_call_end(info: CallInfo) -> None:
        span = spans.pop(info, None)
        if span is None:
            return
        outcome = info.outcome or "unknown"
        span.set_attribute("hardlight.outcome", outcome)
        if info.error is not None:
            span.record_exception(info.error)
        if info.failed:
            span.set_status(Status(StatusCode.ERROR, outcome))
        span.end()

    return ServerHooks(on_call_start=on_call_start, on_call_end=on_call_end)


def instrument(server: Any, tracer_provider: Any = None) -> ServerHooks:
    """Trace every call of ``server`` (an asyncio, anyio or threads ``Server``).

    Returns the hooks added, for ``server.remove_hooks(hooks)``.
    """
    hooks = tracing_hooks(tracer_provider)
    server.add_hooks(hooks)
    return hooks
