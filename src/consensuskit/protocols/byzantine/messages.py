"""The generals' messages on the wire (the simulator and real nodes).

Tags 190-199 belong to Byzantine generals; append new ones, never reuse.

An oral message carries its whole path (LSP82's "v:0:j1:...:jk" read as who relayed
it): a receiver checks that the path ends with the sender, because A2 (the receiver
knows who sent a message) is the only thing an oral message guarantees.  A signed
message carries one signature per signer, commander first.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensuskit.core.messages import message


@message(190)
@dataclass(frozen=True, slots=True, kw_only=True)
class OralOrder:
    """OM(m): ``value`` relayed along ``path`` (path[0] the commander, path[-1] the sender)."""

    instance: int
    path: tuple[str, ...]
    value: str

    def summary(self) -> str:
        return f"OralOrder #{self.instance} {':'.join(self.path)} {self.value}"


@message(191)
@dataclass(frozen=True, slots=True, kw_only=True)
class SignedOrder:
    """SM(m): ``value`` signed by ``signers`` in order (signers[0] the commander)."""

    instance: int
    value: str
    signers: tuple[str, ...]
    signatures: tuple[bytes, ...]

    def summary(self) -> str:
        return f"SignedOrder #{self.instance} {self.value}:{':'.join(self.signers)}"
