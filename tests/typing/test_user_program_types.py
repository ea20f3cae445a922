"""What a user's type checker sees: ``mypy --strict`` on a small user program, run from a
directory outside the repository against the packages laid out as ``pip install .`` lays
them out (the package directories with their ``py.typed``, found through sys.path), so
nothing of the repository's own mypy configuration helps.

It must pass on the documented style (typed proxies, ``with_timeout``, ``state(T)``,
``decode(T)``, the old ``Client(...).method()`` form, service stubs that raise
``NotImplementedError``), and it must report a wrong argument type, a wrong result type
and a stub whose body is only ``...``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SERVICE = '''
import msgspec

from hardlight import Handler, Service, u32


class KvState(msgspec.Struct):
    size: u32 = 0


class Changed(msgspec.Struct, frozen=True):
    key: str


class Kv(Service):
    State = KvState

    async def get(self, key: str) -> str | None:
        raise NotImplementedError

    async def put(self, key: str, value: str) -> None:
        raise NotImplementedError


class KvHandler(Kv, Handler):
    Event = Changed

    async def get(self, key: str) -> str | None:
        return None

    async def put(self, key: str, value: str) -> None:
        self.state.size += 1
        auth = self.handshake.header("authorization") if self.handshake else None
        print(auth, self.peer)
'''

GOOD = '''
from typing import assert_type

import hardlight_anyio
import hardlight_asyncio
import hardlight_threads
from hardlight import ClientConfig, ServerConfig
from service import Changed, Kv, KvHandler, KvState


async def main(config: ClientConfig) -> None:
    async with hardlight_asyncio.connect(Kv, config) as kv:
        assert_type(kv, Kv)
        value = await kv.get("a")
        assert_type(value, str | None)
        await hardlight_asyncio.with_timeout(kv, 2.0).put("a", "b")
        client = hardlight_asyncio.client_of(kv)
        assert_type(client.state(KvState), KvState)
        async for event in client.subscribe():
            assert_type(event.decode(Changed), Changed)

    async def resubscribe(client: hardlight_asyncio.Client[object]) -> None:
        await client.call("get", "a")

    plain = hardlight_asyncio.Client(Kv, config)
    plain.on_reconnect(resubscribe)
    async with plain:
        await plain.get("a")  # the untyped form still type-checks (as Any)
        await plain.call("put", "a", "b", timeout=1.0)
        assert_type(await plain.proxy.get("b"), str | None)

    async with hardlight_anyio.connect(Kv, config) as kv2:
        assert_type(await kv2.get("a"), str | None)


def blocking(config: ClientConfig) -> None:
    with hardlight_threads.connect(Kv, config) as kv:
        assert_type(hardlight_threads.run(kv.get("a")), str | None)
        hardlight_threads.run(hardlight_threads.with_timeout(kv, 1.0).put("a", "b"))


server = hardlight_asyncio.Server(ServerConfig.self_signed("localhost:0"), KvHandler)
'''

BAD = '''
import hardlight_asyncio
import hardlight_threads
from hardlight import ClientConfig, Service
from service import Kv


async def main(config: ClientConfig) -> None:
    async with hardlight_asyncio.connect(Kv, config) as kv:
        await kv.get(1)
        wrong: int = await kv.get("a")
        print(wrong)


def blocking(config: ClientConfig) -> None:
    with hardlight_threads.connect(Kv, config) as kv:
        hardlight_threads.run(kv.put("a", 2))


class Stubbed(Service):
    async def get(self, key: str) -> str: ...
'''


def _install_like_pip(site: Path) -> None:
    """The package directories a wheel of this project holds, as site-packages gets them."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    find = config["tool"]["setuptools"]["packages"]["find"]
    for root in find["where"]:
        for package in sorted((REPO / root).iterdir()):
            name = package.name
            if not (package / "__init__.py").is_file():
                continue
            if not any(
                name == pattern or (pattern.endswith("*") and name.startswith(pattern[:-1]))
                for pattern in find["include"]
            ):
                continue
            shutil.copytree(
                package, site / name, ignore=shutil.ignore_patterns("__pycache__", "data")
            )


def _mypy(user: Path, site: Path, *files: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MYPYPATH", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)  # on sys.path, as site-packages would be
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(user / ".cache"), *files],
        cwd=user,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def user_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    pytest.importorskip("mypy")
    base = tmp_path_factory.mktemp("user")
    site, user = base / "site", base / "project"
    site.mkdir()
    user.mkdir()
    _install_like_pip(site)
    for package in ("hardlight", "hardlight_core", "hardlight_support", "hardlight_asyncio"):
        assert (site / package / "py.typed").is_file(), f"{package} lacks py.typed"
    (user / "service.py").write_text(SERVICE)
    (user / "good.py").write_text(GOOD)
    (user / "bad.py").write_text(BAD)
    return user, site


def test_the_documented_style_passes_mypy_strict(user_dirs: tuple[Path, Path]) -> None:
    user, site = user_dirs
    result = _mypy(user, site, "service.py", "good.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout


def test_mypy_reports_wrong_arguments_results_and_empty_stubs(
    user_dirs: tuple[Path, Path],
) -> None:
    user, site = user_dirs
    result = _mypy(user, site, "service.py", "bad.py")
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert 'bad.py:10: error: Argument 1 to "get" of "Kv" has incompatible type "int"' in out
    assert "bad.py:11: error: Incompatible types in assignment" in out
    assert 'bad.py:17: error: Argument 2 to "put" of "Kv" has incompatible type "int"' in out
    assert "bad.py:21: error: Missing return statement  [empty-body]" in out
    assert "import-not-found" not in out and "import-untyped" not in out
