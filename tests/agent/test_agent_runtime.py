"""The agent's TCP listener serves at most MAX_TCP_CONNECTIONS at once (agent/runtime.py):
anyone who reaches the port can open connections, and each push-pull may hold 8 MiB."""

from __future__ import annotations

import asyncio
import json

import pytest

from consensuskit.agent.keyring import generate_key
from consensuskit.agent.runtime import MAX_TCP_CONNECTIONS, QUERY, Agent
from consensuskit.server.cluster import free_port

pytestmark = pytest.mark.timeout(60)


def test_connections_beyond_the_cap_are_closed_at_once_and_counted():
    async def main() -> None:
        agent = Agent(f"127.0.0.1:{free_port()}", bytes.fromhex(generate_key()), verbose=False)
        await agent.start()
        host, port = agent.id.split(":")
        try:
            stalled = [await asyncio.open_connection(host, int(port)) for _ in range(MAX_TCP_CONNECTIONS + 5)]
            refused = 0
            for reader, _ in stalled[MAX_TCP_CONNECTIONS:]:
                async with asyncio.timeout(2):
                    refused += await reader.read(1) == b""  # closed at once, nothing said
            assert refused == 5 and agent.stats["refused_tcp"] == 5
            for _, writer in stalled:
                writer.close()
            await asyncio.sleep(0.2)
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(bytes([QUERY]) + b"stats\n")
            async with asyncio.timeout(5):
                answer = json.loads(await reader.readline())
            writer.close()
            assert answer["id"] == agent.id and answer["dropped"]["refused_tcp"] == 5
        finally:
            agent.close()

    asyncio.run(main())
