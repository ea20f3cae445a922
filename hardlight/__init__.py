"""hardlight: the user-facing package of the Python HardLight port.

It re-exports the public API of ``hardlight_core`` (declaring services, handlers,
types, errors) and the configurations of ``hardlight_support``, so one import does::

    from hardlight import ClientConfig, Handler, ServerConfig, Service, u32

The runtimes are their own packages: ``hardlight_asyncio``, ``hardlight_anyio``,
``hardlight_threads`` (``Server``, ``Client``, ``connect``).

Subcommands run as ``python -m hardlight <command>``:

* ``schema package.module:Service [-o FILE.json] [--dts FILE.d.ts]``: a JSON
  description of a service (methods in wire order, state, events, types) for
  clients in other languages, e.g. the browser client in ``clients/js``.
"""

from hardlight_core import *  # noqa: F403
from hardlight_core import __all__ as _core_all
from hardlight_support import (
    CertificateMismatch,
    ClientConfig,
    ClientTLS,
    ServerConfig,
    ServerTLS,
    fingerprint_sha256,
)

__all__ = [
    *_core_all,
    "CertificateMismatch",
    "ClientConfig",
    "ClientTLS",
    "ServerConfig",
    "ServerTLS",
    "fingerprint_sha256",
]
