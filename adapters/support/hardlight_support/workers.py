"""N server processes on one port: the supervisor (``run_workers``) and what a worker asks.

``run_workers(n, serve_one, hub=...)`` runs in the process that was started (the
supervisor). It creates a private directory for the hub's Unix domain socket, runs the hub
(``hub(path)``, a context manager: ``hardlight_asyncio.WorkerHub.running``) and starts ``n``
worker processes, each running ``serve_one(index)``. A worker binds the same port with
``ServerConfig(reuse_port=True)`` (``SO_REUSEPORT``: the kernel spreads connections over the
workers), takes its bus from :func:`current_worker` (``WorkerBus()``), and calls
:func:`notify_ready` once it listens.

Workers are started with multiprocessing's **spawn** method: a fresh interpreter that
imports what it runs. Forking would copy the supervisor's threads' state (the hub runs on a
thread there, and a lock one of them held would stay held in the child for ever), and an
event loop, if one existed; spawn has neither problem and works on every OS. Its price is
that ``serve_one`` (and what it carries: the handler class, the configuration) must be
picklable, that is importable by name from a module (a class defined at the top level of a
module or of a script guarded by ``if __name__ == "__main__":``; not one defined inside a
function), and a start-up of about a second per worker.

Stopping: the first SIGTERM or SIGINT to the supervisor sends SIGTERM to every worker, which
stops gracefully as any server does (running calls get the grace, connections close with
1001); the supervisor waits up to ``stop_timeout`` seconds for them, then kills the rest.
Each worker runs in its own process group and ignores SIGINT, so a signal to the
supervisor's group (a terminal's Ctrl-C) reaches the supervisor alone, which relays one
SIGTERM (under systemd, use ``KillMode=mixed``: SIGTERM to the supervisor only). A worker
that dies is logged; ``restarts`` (default 0) bounds how many times dead workers are
started again over the supervisor's life.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from multiprocessing.connection import wait as wait_for_objects
from typing import Any

from ._config import check_reuse_port
from ._signals import StopSignals, signal_name

__all__ = [
    "WorkerInfo",
    "current_worker",
    "notify_ready",
    "reserve_port",
    "run_workers",
]

log = logging.getLogger("hardlight")

#: how often the supervisor looks at its workers and at the signals (seconds)
POLL = 0.1


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker process knows about itself."""

    #: 0 .. count-1
    index: int
    #: how many workers the supervisor runs
    count: int
    #: the hub's Unix domain socket (None: the supervisor runs no hub)
    hub: str | None


_current: WorkerInfo | None = None
_ready: Any = None


def current_worker() -> WorkerInfo | None:
    """This worker's :class:`WorkerInfo`; None outside a worker started by ``run_workers``."""
    return _current


def notify_ready() -> None:
    """Tell the supervisor this worker listens (a no-op outside a worker)."""
    if _ready is not None and _current is not None:
        _ready.put((_current.index, os.getpid()))


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to ``(host, port)`` with ``SO_REUSEPORT``, not listening.

    Resolves port 0 to a free port the workers can all bind, and says now (OSError) when the
    port is taken. Keep it open while the workers run: it holds the port, and a socket that
    does not listen is given no connections.
    """
    check_reuse_port()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _bootstrap(
    info: WorkerInfo, serve_one: Callable[[int], None], ready: Any, log_level: int
) -> None:
    global _current, _ready
    # Our own process group: a signal sent to the supervisor's group (a terminal's Ctrl-C,
    # `timeout`, a shell's kill of a job) reaches the supervisor alone, which relays one
    # SIGTERM; a second stop signal would cut a worker's graceful stop short.
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _current, _ready = info, ready
    logging.basicConfig(
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s %(name)s [worker {info.index}]: %(message)s",
    )
    logging.getLogger("hardlight").setLevel(log_level)
    serve_one(info.index)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stopped: a late SIGTERM changes nothing


class _Worker:
    def __init__(self, index: int, process: Any) -> None:
        self.index = index
        self.process = process

    @property
    def pid(self) -> int:
        return int(self.process.pid)


def run_workers(
    n: int,
    serve_one: Callable[[int], None],
    *,
    hub: Callable[[str], AbstractContextManager[Any]] | None = None,
    on_ready: Callable[[list[int]], None] | None = None,
    ready_timeout: float = 60.0,
    stop_timeout: float = 15.0,
    restarts: int = 0,
) -> int:
    """Run ``n`` worker processes (``serve_one(index)`` each) until SIGTERM/SIGINT.

    ``hub(path)`` is entered before the workers start and left after they stopped (the hub
    listening on the Unix socket ``path``; workers find it in ``current_worker().hub``).
    ``on_ready(pids)`` runs once every worker called :func:`notify_ready` (within
    ``ready_timeout`` seconds, else the workers are stopped and 1 returned). Returns 0 when
    the workers were stopped by a signal and all exited 0, else 1. Call it from the main
    thread (signals) of a program whose main module is importable (``spawn``).
    """
    if n < 1:
        raise ValueError(f"run_workers: n must be at least 1, not {n}")
    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    log_level = logging.getLogger("hardlight").getEffectiveLevel()
    directory = tempfile.mkdtemp(prefix="hardlight-hub-")
    path = os.path.join(directory, "hub.sock") if hub is not None else None
    workers: list[_Worker] = []
    budget = restarts

    def start(index: int) -> _Worker:
        info = WorkerInfo(index, n, path)
        process = context.Process(
            target=_bootstrap,
            args=(info, serve_one, ready, log_level),
            name=f"hardlight-worker-{index}",
            daemon=False,
        )
        process.start()
        log.info("worker %d started (pid %s)", index, process.pid)
        return _Worker(index, process)

    status = 1
    try:
        with StopSignals() as signals, _maybe(hub, path):
            workers = [start(i) for i in range(n)]
            if _wait_ready(workers, ready, ready_timeout, signals):
                if on_ready is not None:
                    on_ready([w.pid for w in workers])
                while signals.received is None:
                    sentinels = [w.process.sentinel for w in workers if w.process.is_alive()]
                    if sentinels:
                        wait_for_objects(sentinels, POLL)
                    for i, worker in enumerate(workers):
                        code = worker.process.exitcode
                        if code is None or worker.process.sentinel is None:
                            continue
                        log.error(
                            "worker %d (pid %d) exited with %s",
                            worker.index, worker.pid, _exit_text(code),
                        )
                        worker.process.close()
                        if budget > 0:
                            budget -= 1
                            workers[i] = start(worker.index)
                        else:
                            worker.process = _Dead(code)
                    if not any(w.process.is_alive() for w in workers):
                        log.error("every worker has exited; the supervisor stops")
                        break
                else:
                    log.info(
                        "supervisor stopping on %s: %d workers",
                        signal_name(signals.received), len(workers),
                    )
            status = _stop(workers, stop_timeout, stopped_by_signal=signals.received is not None)
    finally:
        for worker in workers:  # anything still there (an exception above): no orphans
            if worker.process.is_alive():
                worker.process.kill()
        ready.close()
        shutil.rmtree(directory, ignore_errors=True)
    return status


class _Dead:
    """What is left of a worker that exited and was not restarted."""

    sentinel = None
    pid = 0

    def __init__(self, code: int) -> None:
        self.exitcode = code

    def is_alive(self) -> bool:
        return False


@contextlib.contextmanager
def _maybe(
    hub: Callable[[str], AbstractContextManager[Any]] | None, path: str | None
) -> Iterator[None]:
    if hub is None or path is None:
        yield
        return
    with hub(path):
        yield


def _wait_ready(workers: list[_Worker], ready: Any, timeout: float, signals: StopSignals) -> bool:
    waiting = {w.index for w in workers}
    deadline = time.monotonic() + timeout
    while waiting:
        if signals.received is not None:
            return False
        dead = [w for w in workers if w.index in waiting and not w.process.is_alive()]
        if dead:
            w = dead[0]
            log.error(
                "worker %d (pid %d) exited with %s before it listened",
                w.index, w.pid, _exit_text(w.process.exitcode),
            )
            return False
        if time.monotonic() > deadline:
            log.error("workers %s did not listen within %g s", sorted(waiting), timeout)
            return False
        with contextlib.suppress(Exception):
            index, _pid = ready.get(timeout=POLL)
            waiting.discard(index)
    return True


def _stop(workers: list[_Worker], timeout: float, *, stopped_by_signal: bool) -> int:
    alive = [w for w in workers if w.process.is_alive()]
    for worker in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for worker in alive:
        worker.process.join(max(0.0, deadline - time.monotonic()))
    clean = stopped_by_signal
    for worker in workers:
        if worker.process.is_alive():
            log.error("worker %d (pid %d) did not stop within %g s: killed",
                      worker.index, worker.pid, timeout)
            worker.process.kill()
            worker.process.join(5.0)
            clean = False
        elif worker.process.exitcode != 0:
            if worker in alive:
                log.error("worker %d (pid %d) exited with %s while stopping",
                          worker.index, worker.pid, _exit_text(worker.process.exitcode))
            clean = False
    log.info("supervisor stopped")
    return 0 if clean else 1


def _exit_text(code: int | None) -> str:
    if code is None:
        return "no status"
    if code < 0:
        return f"signal {signal_name(-code)}"
    return f"status {code}"
