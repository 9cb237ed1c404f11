"""Linearizability checking (Wing-Gong / Lowe search with memoisation, per-key parts).

Usable alone::

    from consensuskit.check.linearizability import check_file, get_model
    result = check_file("history.jsonl", model="kv", fmt="consensuskit", timeout=10)
    result.ok            # True, False, or None (time budget ran out)
    print(result.explain(get_model("kv")))

See docs/linearizability.md for the formats, the models and how to add one.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from consensuskit.check.linearizability.checker import CheckResult, check_operations
from consensuskit.check.linearizability.formats import (
    FORMATS,
    HistoryFormatError,
    read_consensuskit_records,
    read_history,
)
from consensuskit.check.linearizability.models import (
    MODEL_NAMES,
    KVModel,
    Model,
    ModelError,
    RegisterModel,
    get_model,
)
from consensuskit.check.linearizability.operation import UNKNOWN, Call, Operation
from consensuskit.check.linearizability.search import PartitionResult, check_partition

# The model a format implies when the caller does not name one.
DEFAULT_MODEL = {"consensuskit": "kv", "porcupine-etcd": "cas-register", "porcupine-kv": "kv"}


def model_for(name: str, fmt: str) -> Model:
    """The model ``name`` as ``fmt``'s histories need it (Porcupine's kv reads "" for
    an absent key; its etcd register starts at nil)."""
    if name == "kv" and fmt == "porcupine-kv":
        return KVModel(missing="")
    return get_model(name)


def check_file(
    path: str | Path,
    *,
    model: str | None = None,
    fmt: str = "consensuskit",
    timeout: float | None = None,
    workers: int | None = None,
) -> CheckResult:
    ops = read_history(path, fmt)
    return check_operations(
        ops, model_for(model or DEFAULT_MODEL[fmt], fmt), timeout=timeout, workers=workers
    )


def check_history(
    history: Iterable[Any],
    *,
    model: str | Model = "kv",
    timeout: float | None = None,
    workers: int | None = None,
) -> CheckResult:
    """Check the simulator's ``History`` (or any iterable of records/dicts in the
    consensuskit per-operation format) against a model by name or a model object (a
    service's own model, which then judges which op kinds exist)."""
    records = ((n, r if isinstance(r, dict) else r.to_dict()) for n, r in enumerate(history, start=1))
    if isinstance(model, str):
        ops = read_consensuskit_records(records, "history")
        return check_operations(ops, model_for(model, "consensuskit"), timeout=timeout, workers=workers)
    ops = read_consensuskit_records(records, "history", kinds=None)
    return check_operations(ops, model, timeout=timeout, workers=workers)


__all__ = [
    "DEFAULT_MODEL",
    "FORMATS",
    "MODEL_NAMES",
    "UNKNOWN",
    "Call",
    "CheckResult",
    "HistoryFormatError",
    "KVModel",
    "Model",
    "ModelError",
    "Operation",
    "PartitionResult",
    "RegisterModel",
    "check_file",
    "check_history",
    "check_operations",
    "check_partition",
    "get_model",
    "model_for",
    "read_history",
]
