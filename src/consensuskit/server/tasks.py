"""The server's background tasks (the session clock, the level raiser, the peer
follower): how one is stopped.

Rules this module owns:
  * ``cancel_and_wait(task)`` cancels the task and waits until it ended, so nothing it
    does runs after its owner stopped; its cancellation is not an error, any other
    exception it ended with is raised to the owner.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Future[Any] | None) -> None:
    """Cancel ``task`` (None: nothing to do) and wait until it ended (module rules)."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
