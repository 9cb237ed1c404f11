"""Eight real agents on loopback (issue 13, "A real membership agent"): a SIGKILLed agent
is marked dead by all others; a SIGSTOPped one that resumes in time refutes and stays
alive; a restarted one rejoins with a higher incarnation; garbage, wrongly keyed and
replayed packets are dropped and counted."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from consensuskit.agent.commands import agent_argv
from consensuskit.agent.keyring import Keyring, generate_key
from consensuskit.agent.runtime import query
from consensuskit.core.messages import encode
from consensuskit.protocols.swim.messages import Gossip
from consensuskit.server.cluster import free_base_port

pytestmark = pytest.mark.timeout(300)

N = 8
PERIOD = 1.0  # probe interval: a loaded 2-core machine runs 8 Python agents


class Agents:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.key_file = root / "key"
        self.key_file.write_text(generate_key() + "\n")
        base = free_base_port(N)
        self.addresses = [f"127.0.0.1:{base + i}" for i in range(N)]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, i: int) -> None:
        join = [self.addresses[0]] if i else [self.addresses[1]]
        argv = agent_argv(self.addresses[i], self.key_file, join, self.root / f"data{i}", PERIOD)
        log = open(self.root / f"agent{i}.log", "ab")  # noqa: SIM115 (the process holds it)
        self.procs[i] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def states(self, observer: int) -> dict[str, tuple[str, int]]:
        try:
            listed = query(self.addresses[observer], "members", timeout=3.0)
        except (OSError, ValueError):
            return {}
        return {m["id"]: (m["state"], m["incarnation"]) for m in listed}

    def view_of(self, member: int, observers: list[int]) -> dict[int, tuple[str, int] | None]:
        return {o: self.states(o).get(self.addresses[member]) for o in observers}

    def others(self, *excluded: int) -> list[int]:
        return [i for i in range(N) if i not in excluded]

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
        for proc in self.procs.values():
            proc.wait(timeout=10)


def wait_for(pred: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.3)
    return pred()


@pytest.fixture(scope="module")
def agents(tmp_path_factory: Any) -> Iterator[Agents]:
    group = Agents(tmp_path_factory.mktemp("agents"))
    try:
        for i in range(N):
            group.start(i)
        everyone = lambda: all(  # noqa: E731
            sum(s == "alive" for s, _ in group.states(o).values()) == N for o in range(N)
        )
        assert wait_for(everyone, 120.0), [group.states(o) for o in range(N)]
        yield group
    finally:
        group.stop_all()


def test_bad_packets_are_dropped_and_counted(agents: Agents):
    target = agents.addresses[2]
    host, port = target.rsplit(":", 1)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.sendto(b"garbage", (host, int(port)))
    udp.sendto(Keyring(bytes(32), "intruder:1").seal(encode(Gossip())), (host, int(port)))
    honest = Keyring(bytes.fromhex(agents.key_file.read_text().strip()), "127.0.0.1:1")
    packet = honest.seal(encode(Gossip()))
    udp.sendto(packet, (host, int(port)))
    udp.sendto(packet, (host, int(port)))  # the same packet again
    honest_garbage = honest.seal(b"\xc1 not a message")
    udp.sendto(honest_garbage, (host, int(port)))
    udp.close()

    def counted() -> bool:
        dropped = query(target, "stats")["dropped"]
        return (
            dropped.get("undecryptable", 0) >= 2
            and dropped.get("replayed", 0) >= 1
            and (dropped.get("undecodable", 0) >= 1)
        )

    assert wait_for(counted, 10.0), query(target, "stats")
    assert agents.procs[2].poll() is None  # still running


def test_sigkill_is_dead_everywhere_then_a_restart_rejoins_higher(agents: Agents):
    victim = N - 1
    agents.procs[victim].kill()
    agents.procs[victim].wait()
    observers = agents.others(victim)
    # Bound: ~20 periods to be probed at all, Lifeguard's largest suspicion timeout for 8
    # members (6 x 4 x 1 s), 10 periods to spread: 54 s.
    dead = wait_for(
        lambda: all(v and v[0] == "dead" for v in agents.view_of(victim, observers).values()), 54.0
    )
    assert dead, agents.view_of(victim, observers)
    before = max(v[1] for v in agents.view_of(victim, observers).values() if v)
    agents.start(victim)
    back = wait_for(
        lambda: all(
            v and v[0] == "alive" and v[1] > before for v in agents.view_of(victim, observers).values()
        ),
        60.0,
    )
    assert back, agents.view_of(victim, observers)


def test_sigstop_then_resume_refutes_and_stays_alive(agents: Agents):
    sleeper = N - 2
    observers = agents.others(sleeper, N - 1)
    incarnation = max(v[1] for v in agents.view_of(sleeper, observers).values() if v)
    agents.procs[sleeper].send_signal(signal.SIGSTOP)
    seen: set[str] = set()
    end = time.monotonic() + 3.0 * PERIOD  # under the 4 s smallest suspicion timeout
    while time.monotonic() < end:
        seen |= {v[0] for v in agents.view_of(sleeper, observers[:3]).values() if v}
        time.sleep(0.2)
    agents.procs[sleeper].send_signal(signal.SIGCONT)
    settled = wait_for(
        lambda: all(v and v[0] == "alive" for v in agents.view_of(sleeper, observers).values()), 30.0
    )
    assert settled, agents.view_of(sleeper, observers)
    assert "dead" not in seen
    if "suspect" in seen:  # suspected while stopped: it must have refuted above it
        assert min(v[1] for v in agents.view_of(sleeper, observers).values() if v) > incarnation


def test_members_and_keygen_verbs(agents: Agents):
    import json

    from typer.testing import CliRunner

    from consensuskit.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["members", "--agent", agents.addresses[0], "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert {m["id"] for m in listed} >= set(agents.addresses[:4])
    assert all(set(m) == {"id", "address", "state", "incarnation"} for m in listed)
    assert all(m["state"] in ("alive", "suspect", "dead", "left") for m in listed)
    key = runner.invoke(app, ["agent-keygen"])
    assert key.exit_code == 0 and len(bytes.fromhex(key.stdout.strip())) == 32
    nobody = runner.invoke(app, ["members", "--agent", "127.0.0.1:1"])
    assert nobody.exit_code == 1 and "no agent answers" in nobody.output
