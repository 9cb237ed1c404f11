"""The agent's sealed packets: what opens, and what is dropped and counted."""

from __future__ import annotations

import pytest

from consensuskit.agent.keyring import Keyring, generate_key, load_key

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))


def test_a_sealed_packet_opens_once():
    a, b = Keyring(KEY, "a"), Keyring(KEY, "b")
    packet = a.seal(b"hello")
    assert b.open(packet) == ("a", b"hello")
    assert b.open(packet) is None  # the same packet again: a replay
    assert b.stats() == {"replayed": 1}


def test_garbage_and_foreign_keys_are_counted_not_raised():
    b = Keyring(KEY, "b")
    assert b.open(b"") is None
    assert b.open(b"\x01" + b"x" * 40) is None
    assert b.open(Keyring(OTHER, "a").seal(b"hi")) is None
    assert b.stats() == {"undecryptable": 3}


def test_an_older_boot_is_a_replay_and_a_newer_one_resets_the_window():
    a, b = Keyring(KEY, "a"), Keyring(KEY, "b")
    old = a.seal(b"1")
    a.boot += 10  # the sender restarted later
    assert b.open(a.seal(b"2")) == ("a", b"2")
    assert b.open(old) is None
    assert b.stats() == {"replayed": 1}


def test_out_of_order_packets_within_the_window_open():
    a, b = Keyring(KEY, "a"), Keyring(KEY, "b")
    first, second = a.seal(b"1"), a.seal(b"2")
    assert b.open(second) is not None and b.open(first) is not None


def test_key_files(tmp_path):
    path = tmp_path / "key"
    path.write_text(generate_key() + "\n")
    assert len(load_key(path)) == 32
    path.write_text("not hex")
    with pytest.raises(ValueError, match="64 hex digits"):
        load_key(path)
    with pytest.raises(ValueError, match="cannot read key file"):
        load_key(tmp_path / "missing")
