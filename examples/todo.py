"""The reference's examples/todo.rs in Python: ``python examples/todo.py``."""

from __future__ import annotations

import asyncio

from hardlight_apps.todo import Task, Todo, TodoHandler
from hardlight_asyncio import Client, Server
from hardlight_support import ClientConfig, ServerConfig


async def print_tasks(client: Client) -> None:
    """Print every task, or 'No tasks'."""
    tasks = await client.get_all()
    for task_id, task in sorted(tasks.items()):
        print(task_id, task)
    if not tasks:
        print("No tasks")
    print()


async def main() -> int:
    """Create, delete, mark done and delete done tasks, printing as the Rust example does."""
    config = ServerConfig.self_signed("localhost:0")
    assert config.fingerprint is not None
    async with Server(config, TodoHandler) as server:
        pinned = ClientConfig.pinned(f"localhost:{server.port}", config.fingerprint)
        async with Client(Todo, pinned) as client:
            await print_tasks(client)
            for text in ["Buy milk", "Buy eggs", "Buy bread", "use arch btw"]:
                await client.create(Task(text))
            task_id = await client.create(Task("Buy cheese"))
            await print_tasks(client)
            await client.delete([task_id])
            await print_tasks(client)
            await client.mark_as_done([0, 1])
            await client.delete_done_tasks()
            await print_tasks(client)
            await client.delete_all()
            await print_tasks(client)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
