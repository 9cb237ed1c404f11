"""A hand-driven Env for protocol rule tests: nothing happens unless the test says so.

Messages wait in ``sent`` until the test takes them, timers only note their deadline,
answers and records are kept for assertions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from consensuskit.core.client import ClientResponse
from consensuskit.core.storage import MemoryStorage


@dataclass
class FakeEnv:
    node_id: str
    storage: MemoryStorage = field(default_factory=MemoryStorage)
    clock: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(1))
    sent: list[tuple[str, Any]] = field(default_factory=list)
    timers: dict[str, float] = field(default_factory=dict)
    delivered: list[ClientResponse] = field(default_factory=list)
    records: list[tuple[str, dict]] = field(default_factory=list)

    def now(self) -> float:
        return self.clock

    def send(self, dst: str, msg: Any) -> None:
        self.sent.append((dst, msg))

    def set_timer(self, key: str, delay: float) -> None:
        self.timers[key] = self.clock + delay

    def cancel_timer(self, key: str) -> None:
        self.timers.pop(key, None)

    def deliver(self, response: ClientResponse) -> None:
        self.delivered.append(response)

    def record(self, kind: str, **fields: Any) -> None:
        self.records.append((kind, fields))

    def take(self) -> list[tuple[str, Any]]:
        out, self.sent = self.sent, []
        return out

    def recorded(self, kind: str) -> list[dict]:
        return [f for k, f in self.records if k == kind]
