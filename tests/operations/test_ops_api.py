"""The three adapters expose the same public names, with the documented differences only:
asyncio and anyio ``async def`` where threads blocks, anyio's server has no free-standing
``start()``, asyncio's server and client have ``tls_transport``, asyncio's server
``workers``/``run_workers``, the threads server its ``lock``."""

from __future__ import annotations

import inspect
from types import ModuleType
from typing import Any

import pytest

import hardlight_anyio
import hardlight_asyncio
import hardlight_threads
from hardlight_core import Handler, Service, u32
from hardlight_support import ClientConfig, ServerConfig

MODULES = (hardlight_asyncio, hardlight_anyio, hardlight_threads)
CLASSES = ("Server", "Client", "Subscription", "TopicNotifier", "EventEmitter")

#: (class, name) -> the adapters that have it, where not all three do (docs/adapters.md)
DOCUMENTED_GAPS = {
    ("Server", "start"): {"hardlight_asyncio", "hardlight_threads"},  # anyio: async with
    ("Server", "tls_transport"): {"hardlight_asyncio"},
    ("Server", "lock"): {"hardlight_threads"},
    ("Server", "workers"): {"hardlight_asyncio"},  # Server(..., workers=N).run_workers()
    ("Server", "run_workers"): {"hardlight_asyncio"},
    ("Client", "tls_transport"): {"hardlight_asyncio"},
}
#: async in asyncio and anyio, but plain (non-blocking) in threads too
SYNC_EVERYWHERE = {("EventEmitter", "emit_nowait")}


class Ping(Service):
    async def ping(self, x: u32) -> u32: ...


class PingHandler(Ping, Handler):
    async def ping(self, x: u32) -> u32:
        return x


def _kind(cls: type[Any], name: str) -> str:
    static = inspect.getattr_static(cls, name)
    if isinstance(static, property):
        return "property"
    value = getattr(cls, name)
    if inspect.iscoroutinefunction(value):
        return "async"
    if callable(value):
        return "function"
    return "attribute"


def _names(module: ModuleType, cls_name: str) -> set[str]:
    cls = getattr(module, cls_name)
    names = {n for n in dir(cls) if not n.startswith("_")}
    if cls_name == "Server":  # and what every instance carries
        server = cls(ServerConfig.self_signed("localhost:0"), PingHandler)
        names |= {n for n in vars(server) if not n.startswith("_")}
    if cls_name == "Client":
        client = cls(Ping, ClientConfig.pinned("localhost:1", "0" * 64))
        names |= {n for n in vars(client) if not n.startswith("_")}
    return names


@pytest.mark.parametrize("cls_name", CLASSES)
def test_the_same_public_names_on_every_adapter(cls_name: str) -> None:
    names = {m.__name__: _names(m, cls_name) for m in MODULES}
    everything = set().union(*names.values())
    gaps = {
        name: {m for m, have in names.items() if name in have}
        for name in everything
        if not all(name in have for have in names.values())
    }
    documented = {n: ms for (c, n), ms in DOCUMENTED_GAPS.items() if c == cls_name}
    assert gaps == documented


@pytest.mark.parametrize("cls_name", CLASSES)
def test_async_where_the_adapter_is_async_and_blocking_in_threads(cls_name: str) -> None:
    asyncio_cls, anyio_cls, threads_cls = (getattr(m, cls_name) for m in MODULES)
    shared = (
        {n for n in dir(asyncio_cls) if not n.startswith("_")}
        & {n for n in dir(anyio_cls) if not n.startswith("_")}
        & {n for n in dir(threads_cls) if not n.startswith("_")}
    )
    assert shared
    for name in sorted(shared):
        kinds = (_kind(asyncio_cls, name), _kind(anyio_cls, name), _kind(threads_cls, name))
        if kinds[0] == "async" and (cls_name, name) not in SYNC_EVERYWHERE:
            assert kinds == ("async", "async", "function"), (name, kinds)
        else:
            assert kinds[0] == kinds[1] == kinds[2], (name, kinds)


def test_run_is_serve_forever_and_emit_nowait_is_everywhere() -> None:
    for module in MODULES:
        assert module.Server.run is module.Server.serve_forever
        emitter = module.EventEmitter
        assert not inspect.iscoroutinefunction(emitter.emit_nowait)
    assert hardlight_threads.EventEmitter.emit is hardlight_threads.EventEmitter.emit_nowait
