"""The generals' ProtocolSpec: what the simulator (and the server) need to run them.

Rules this module owns:
  * the protocol is ``byzantine-generals``; it is not a log and serves no client
    operations (orders come from its schedule, options.py), so it names no service of
    its own and answers any op with an error;
  * its flags (``--m``, ``--mode``, ``--traitors``, ``--strategy``, ``--order``,
    ``--round``) are options; its bug knobs are ``trust-commander`` (OM: a lieutenant
    obeys the commander's own message, i.e. OM(0)) and ``accept-forgeries`` (SM: no
    signature is checked);
  * the checker (IC1/IC2 per instance) and the monitor live in check/byzantine.py and
    are wired by whoever registers the spec (the catalog, or a plug-in).
"""

from __future__ import annotations

from consensuskit.core.registry import ProtocolFlag, ProtocolSpec
from consensuskit.protocols.byzantine.node import GeneralNode
from consensuskit.protocols.byzantine.options import DEFAULTS, ORDER_CHOICES, validate
from consensuskit.protocols.byzantine.oral import TRUST_COMMANDER
from consensuskit.protocols.byzantine.rounds import MODES
from consensuskit.protocols.byzantine.signed import ACCEPT_FORGERIES
from consensuskit.protocols.byzantine.strategies import STRATEGIES

NAME = "byzantine-generals"


def generals_spec() -> ProtocolSpec:
    return ProtocolSpec(
        name=NAME,
        description="Byzantine generals: OM(m) and SM(m) in synchronous rounds (LSP 1982)",
        make_node=GeneralNode,
        bugs=(TRUST_COMMANDER, ACCEPT_FORGERIES),
        default_options=dict(DEFAULTS),
        validate_options=validate,
        min_nodes=3,
        flags=(
            ProtocolFlag(name="m", kind=int, default=1, help="Rounds of relaying: OM(m) / SM(m)."),
            ProtocolFlag(
                name="mode", kind=str, default="oral", help="Oral or signed messages.", choices=MODES
            ),
            ProtocolFlag(name="traitors", kind=str, default="", help="Traitor node ids, comma-separated."),
            ProtocolFlag(
                name="strategy",
                kind=str,
                default="random",
                help="The traitors' strategy.",
                choices=tuple(STRATEGIES),
            ),
            ProtocolFlag(
                name="order",
                kind=str,
                default="alternate",
                help="The commander's order.",
                choices=ORDER_CHOICES,
            ),
            ProtocolFlag(name="round", kind=float, default=0.05, help="Seconds per synchronous round."),
        ),
    )
