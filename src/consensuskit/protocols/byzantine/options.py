"""The generals' options as the simulator and the server hand them over.

Rules this module owns:
  * every option has a default (``DEFAULTS``); ``parse`` validates them all and raises
    ValueError with one line naming the option and what is valid;
  * ``traitors`` is a list of node ids; the commander is the first member;
  * ``order`` is the commander's order in every instance: attack, retreat, or
    ``alternate`` (attack in even instances, retreat in odd ones);
  * ``round`` is the length of one synchronous round in seconds of the node's clock:
    it must exceed the network's latency plus the signing CPU time, or messages come
    late and count as missing (the synchronous model of LSP82 no longer holds).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from consensuskit.protocols.byzantine.orders import ORDERS
from consensuskit.protocols.byzantine.rounds import MODES
from consensuskit.protocols.byzantine.signing import SCHEMES
from consensuskit.protocols.byzantine.strategies import STRATEGIES

ORDER_CHOICES = (*ORDERS, "alternate")

DEFAULTS: dict[str, Any] = {
    "m": 1,
    "mode": "oral",
    "traitors": [],
    "strategy": "random",
    "order": "alternate",
    "round": 0.05,
    "instances": 0,  # 0: one instance after another for as long as the run lasts
    "scheme": "token",
    "key_seed": 0,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class GeneralsOptions:
    m: int
    mode: str
    traitors: frozenset[str]
    strategy: str
    order: str
    round: float
    instances: int
    scheme: str
    key_seed: int
    bugs: frozenset[str]

    def order_of(self, instance: int) -> str:
        if self.order == "alternate":
            return ORDERS[instance % 2]
        return self.order


def parse(options: Mapping[str, Any]) -> GeneralsOptions:
    """The options, validated (ValueError, one line)."""
    unknown = sorted(set(options) - set(DEFAULTS) - {"bugs"})
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)}; valid: {', '.join(DEFAULTS)}")
    got = {**DEFAULTS, **options}
    m, rnd, instances = got["m"], got["round"], got["instances"]
    if type(m) is not int or m < 0:
        raise ValueError(f"m must be an integer >= 0, got {m!r}")
    if type(instances) is not int or instances < 0:
        raise ValueError(f"instances must be an integer >= 0, got {instances!r}")
    if not isinstance(rnd, int | float) or isinstance(rnd, bool) or rnd <= 0:
        raise ValueError(f"round must be a positive number of seconds, got {rnd!r}")
    for key, valid in (
        ("mode", MODES),
        ("strategy", tuple(STRATEGIES)),
        ("order", ORDER_CHOICES),
        ("scheme", SCHEMES),
    ):
        if got[key] not in valid:
            raise ValueError(f"unknown {key} {got[key]!r}; valid: {', '.join(valid)}")
    traitors = got["traitors"]
    if isinstance(traitors, str):
        traitors = [t for t in traitors.split(",") if t]
    if not isinstance(traitors, list | tuple) or not all(isinstance(t, str) for t in traitors):
        raise ValueError(f"traitors must be a list of node ids, got {traitors!r}")
    return GeneralsOptions(
        m=m,
        mode=got["mode"],
        traitors=frozenset(traitors),
        strategy=got["strategy"],
        order=got["order"],
        round=float(rnd),
        instances=instances,
        scheme=got["scheme"],
        key_seed=int(got["key_seed"]),
        bugs=frozenset(got.get("bugs") or ()),
    )


def validate(options: dict[str, Any]) -> None:
    parse(options)
