"""The todo app (the reference's ``examples/todo.rs``): HashMap state and results."""

from __future__ import annotations

import enum

import msgspec

from hardlight_core import Handler, Service, u32

__all__ = ["Task", "TaskStatus", "Todo", "TodoHandler", "TodoState"]

MASK = 0xFFFFFFFF


class TaskStatus(enum.Enum):
    """``TaskStatus``: a unit-only enum."""

    Todo = 0
    Done = 1


class Task(msgspec.Struct):
    """A task."""

    text: str
    status: TaskStatus = TaskStatus.Todo


class TodoState(msgspec.Struct):
    """The connection state: tasks by id and the next id."""

    tasks: dict[u32, Task] = msgspec.field(default_factory=dict)
    next_id: u32 = 0


class Todo(Service):
    """The RPC methods (Rust trait ``Todo``)."""

    State = TodoState

    async def create(self, task: Task) -> u32:
        """Store a task; returns its id."""
        raise NotImplementedError

    async def mark_as_done(self, id: list[u32]) -> None:
        """Mark tasks done."""
        raise NotImplementedError

    async def get(self, ids: list[u32]) -> dict[u32, Task]:
        """The tasks with these ids."""
        raise NotImplementedError

    async def get_all(self) -> dict[u32, Task]:
        """Every task."""
        raise NotImplementedError

    async def delete(self, ids: list[u32]) -> None:
        """Delete tasks."""
        raise NotImplementedError

    async def delete_all(self) -> None:
        """Delete every task."""
        raise NotImplementedError

    async def delete_done_tasks(self) -> None:
        """Delete the tasks that are done."""
        raise NotImplementedError


class TodoHandler(Todo, Handler):
    """The reference's handler."""

    state: TodoState

    async def create(self, task: Task) -> u32:
        state = self.state
        task_id = state.next_id
        state.next_id = (state.next_id + 1) & MASK
        state.tasks = {**state.tasks, task_id: task}
        return task_id

    async def mark_as_done(self, id: list[u32]) -> None:
        tasks = dict(self.state.tasks)
        for task_id in id:
            task = tasks.get(task_id)
            if task is not None:
                tasks[task_id] = Task(task.text, TaskStatus.Done)
        self.state.tasks = tasks

    async def get(self, ids: list[u32]) -> dict[u32, Task]:
        tasks = self.state.tasks
        return {i: tasks[i] for i in ids if i in tasks}

    async def get_all(self) -> dict[u32, Task]:
        return dict(self.state.tasks)

    async def delete(self, ids: list[u32]) -> None:
        tasks = dict(self.state.tasks)
        for task_id in ids:
            tasks.pop(task_id, None)
        self.state.tasks = tasks

    async def delete_all(self) -> None:
        self.state.tasks = {}

    async def delete_done_tasks(self) -> None:
        self.state.tasks = {
            i: t for i, t in self.state.tasks.items() if t.status is not TaskStatus.Done
        }
