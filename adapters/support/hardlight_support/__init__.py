"""hardlight_support: what the adapters share that is not a protocol decision.

The core (``hardlight_core``) decides everything and does no I/O; the adapters
(asyncio, anyio, threads, ASGI) move bytes. What two adapters need beyond that
(waiting on the core's channels, configurations with addresses and TLS, certificate
files, NATS subject names, stopping on SIGTERM/SIGINT) lives here, once.
"""

from ._async_client import reconnect_with_backoff
from ._async_server import AsyncEventEmitter, AsyncTopicNotifier
from ._blocking import BlockingChannelReader
from ._channels import ChannelReader
from ._client_base import ClientBase
from ._config import ClientConfig, ServerConfig
from ._signals import STOP_SIGNALS, StopSignals, loop_waker, signal_name
from ._subjects import ORIGIN_HEADER, BusUnavailable, new_node_id, subject_topic, topic_subject
from ._tls import CertificateMismatch, ClientTLS, ServerTLS, fingerprint_sha256

__all__ = [
    "AsyncEventEmitter",
    "AsyncTopicNotifier",
    "BlockingChannelReader",
    "BusUnavailable",
    "CertificateMismatch",
    "ChannelReader",
    "ClientBase",
    "ClientConfig",
    "ClientTLS",
    "ORIGIN_HEADER",
    "STOP_SIGNALS",
    "ServerConfig",
    "ServerTLS",
    "StopSignals",
    "fingerprint_sha256",
    "loop_waker",
    "new_node_id",
    "reconnect_with_backoff",
    "signal_name",
    "subject_topic",
    "topic_subject",
]
