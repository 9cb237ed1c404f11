"""The server's background tasks (the session clock, the level raiser, the peer
follower): how one is stopped.

Rules this module owns:
  * ``cancel_and_wait(task)`` cancels the task and waits until it ended, so nothing it
    does runs after its owner stopped; its cancellation is not an error, any other
    exception it ended with is raised to the owner;
  * ``Background``: an object that runs one such task, its ``_run``, from ``start()``
    (once) until ``stop()``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


class Background:
    """Runs ``_run`` as one task from ``start()`` until ``stop()`` (module rules)."""

    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        raise NotImplementedError


async def cancel_and_wait(task: asyncio.Future[Any] | None) -> None:
    """Cancel ``task`` (None: nothing to do) and wait until it ended (module rules)."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
