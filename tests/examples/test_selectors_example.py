"""The custom-loop example serves the counter app to our (Rust-compatible) client."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from hardlight_apps.counter import Counter, CounterEvent, Incremented, ServerSentTest
from hardlight_asyncio import Client
from hardlight_support import ClientConfig

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "selectors_counter_server.py"


def test_selectors_loop_serves_the_counter() -> None:
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--self-signed", "--port", "0", "--max-seconds", "60"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().rsplit(":", 1)[1])
        fingerprint = proc.stdout.readline().split()[-1]

        async def go() -> tuple[int, list[object]]:
            async with Client(Counter, ClientConfig.pinned(f"localhost:{port}", fingerprint)) as c:
                seen: list[object] = []
                await c.new_counter()
                await c.increment(5)
                value = await c.get()

                async def collect() -> None:
                    async for event in c.subscribe():
                        seen.append(event.decode(CounterEvent))
                        if len(seen) == 2:
                            return

                await asyncio.wait_for(collect(), 10)
                assert c.state().counter == 5
                return value, seen

        value, seen = asyncio.run(asyncio.wait_for(go(), 30))
        assert value == 5
        assert ServerSentTest() in seen and Incremented(to=5, from_=0) in seen
    finally:
        proc.terminate()
        proc.wait(10)


def test_pet_and_todo_examples_run() -> None:
    for name, expected in (("pet.py", "Mittens says meow!"), ("todo.py", "use arch btw")):
        result = subprocess.run(
            [sys.executable, str(EXAMPLE.parent / name)], capture_output=True, text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert expected in result.stdout
