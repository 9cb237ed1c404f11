"""What ``consensuskit backup save|restore|status`` do (cli_backup.py parses options; the
HTTP side is backup_api.py, the file format backup_file.py).

Rules this module owns (with cli.py's exit codes: 0 done, 1 refused or unreachable,
2 bad input):
  * ``save`` checks the node's answer as ``parse`` would before keeping it, then writes
    it as etcdctl does: ``FILE.part``, fsync, rename, fsync of the directory, so FILE is
    a whole backup or absent;
  * ``restore`` and ``status`` read and check the file first: a missing, unreadable or
    corrupt file is one line, exit 2, and nothing is sent;
  * ``status`` also restores the state into a fresh state machine of its service, off
    any cluster: a file that passes it restores (the count of entries is that state
    machine's ``len()``);
  * both admin verbs need the admin token (``--admin-token-file`` or
    $CONSENSUSKIT_ADMIN_TOKEN_FILE).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from consensuskit.server.auth_commands import BadInput, Verbs, run_verb
from consensuskit.server.backup_api import RESTORE_TIMEOUT
from consensuskit.server.backup_file import Backup, BackupError, parse
from consensuskit.server.wal import fsync_directory

PART_SUFFIX = ".part"
# A backup of a large state takes a while to encode and send; a restore to apply.
BACKUP_TIMEOUT = 120.0


def save_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (see the module rules)."""
    part = path.with_name(path.name + PART_SUFFIX)
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds every secret
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(part, path)
    fsync_directory(path.parent)


def load_file(path: str) -> Backup:
    """The backup in ``path`` (its ``state`` a view of the file's bytes, ``data``);
    BadInput (exit 2) when it cannot be read or is not one."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read backup {path}: {exc.strerror or exc}") from None
    try:
        return parse(data)
    except BackupError as exc:
        raise BadInput(f"{path}: {exc}") from None


def _save(client: Any, args: dict[str, Any]) -> dict[str, Any]:
    data = client.backup()
    try:
        backup = parse(data)
    except BackupError as exc:
        raise BadInput(f"the node's answer is not a backup: {exc}") from None
    path = Path(args["file"])
    try:
        save_file(path, data)
    except OSError as exc:
        raise BadInput(f"cannot write {path}: {exc.strerror or exc}") from None
    return {"file": str(path), "bytes": len(data), "sha256": backup.sha256, **backup.header}


def _save_text(doc: dict[str, Any]) -> str:
    return (
        f"saved {doc['file']}: service {doc['service']} from node {doc['node']} ({doc['protocol']}) "
        f"at index {doc['index']}, {doc['bytes']:,} bytes, sha256 {doc['sha256'][:16]}"
    )


def _restore(client: Any, args: dict[str, Any]) -> dict[str, Any]:
    backup: Backup = args["backup"]
    answer = client.restore(args["data"])
    doc = answer if isinstance(answer, dict) else {}
    return {"file": args["file"], "restored": doc.get("restored"), "index": doc.get("index"), **backup.header}


def _restore_text(doc: dict[str, Any]) -> str:
    return (
        f"restored {doc['file']}: {doc['restored']} entries of service {doc['service']} "
        f"(taken from {doc['node']} at index {doc['index']})"
        if doc.get("restored") is not None
        else f"restored {doc['file']}"
    )


VERBS: Verbs = {"backup-save": (_save, _save_text), "backup-restore": (_restore, _restore_text)}


def _load_for_restore(args: dict[str, Any]) -> None:
    backup = load_file(args["file"])
    args["backup"], args["data"] = backup, backup.data


def _check_target(args: dict[str, Any]) -> None:
    parent = Path(args["file"]).resolve().parent
    if not parent.is_dir():
        raise BadInput(f"cannot write {args['file']}: no directory {parent}")
    if Path(args["file"]).is_dir():
        raise BadInput(f"cannot write {args['file']}: it is a directory")


def backup_command(verb: str, args: dict[str, Any], **options: Any) -> int:
    """Run ``backup save`` or ``backup restore``; the exit code (``run_verb``'s)."""
    options.setdefault("check_args", _load_for_restore if verb == "backup-restore" else _check_target)
    wait = RESTORE_TIMEOUT if verb == "backup-restore" else BACKUP_TIMEOUT
    return run_verb(VERBS, verb, args, timeout=wait, deadline=wait + 30.0, **options)


def describe(backup: Backup) -> dict[str, Any]:
    """The file's header and checksum, and how many entries its state holds once
    restored into a fresh state machine of its service (BackupError if it does not)."""
    doc: dict[str, Any] = {"sha256": backup.sha256, **backup.header}
    doc["taken_at_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(backup.header["taken_at"])))
    doc["entries"] = trial_restore(backup)
    return doc


def trial_restore(backup: Backup) -> int:
    """Restore ``backup`` into a fresh state machine of its service; its ``len()``."""
    from consensuskit.catalog import default_registry
    from consensuskit.core.client import ClientRequest
    from consensuskit.statemachines.backup import restore_op_of_encoded
    from consensuskit.statemachines.sessions import refusal

    registry = default_registry()
    try:
        spec = registry.service(backup.service)
    except KeyError:
        raise BackupError(f"service {backup.service!r} is not in this build") from None
    if not spec.log:
        raise BackupError(f"service {backup.service} keeps no state machine: its backups do not restore")
    machine = spec.make_state_machine()
    op = restore_op_of_encoded(bytes(backup.state))
    result = machine.apply(ClientRequest(client_id="backup-status", seq=1, op=op))
    error = refusal(result)
    if error is not None:
        raise BackupError(f"the state does not restore into service {backup.service} ({error})")
    return len(machine)


def status_command(path: str, *, as_json: bool = False) -> int:
    """``consensuskit backup status FILE``: 0 when the file is a backup that restores, else 2."""
    try:
        doc = describe(load_file(path))
    except (BadInput, BackupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(doc, indent=2))
        return 0
    rows = [
        ("service", doc["service"]),
        ("entries", f"{doc['entries']:,}"),
        ("taken", f"{doc['taken_at_utc']} from node {doc['node']} at index {doc['index']}"),
        ("protocol", doc["protocol"]),
        ("cluster", doc["cluster_id"] or "-"),
        ("state", f"{doc['state_bytes']:,} bytes (codec {doc['codec']})"),
        ("sha256", doc["sha256"]),
    ]
    width = max(len(name) for name, _ in rows)
    print("\n".join(f"{name:<{width}}  {value}" for name, value in rows))
    return 0
