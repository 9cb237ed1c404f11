"""``python -m consensuskit.agent --bind ...``: the agent alone, without the whole CLI's
start-up (what ``agent-demo`` and the real-process tests start)."""

from __future__ import annotations

import typer

from consensuskit.agent.commands import agent


def main() -> None:
    typer.run(agent)


if __name__ == "__main__":
    main()
