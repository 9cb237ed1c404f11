"""MACs and signatures (auth.py): authentic messages pass, forgeries do not."""

from __future__ import annotations

from consensuskit.protocols.pbft.auth import Ed25519Signer, Macs, Token, TokenKeyring

MEMBERS = ("n1", "n2", "n3", "n4")


def test_a_mac_checks_only_between_the_pair_that_shares_the_key():
    n1, n2, n3 = (Macs(m, MEMBERS, b"s") for m in MEMBERS[:3])
    mac = n1.mac("n2", b"data")
    assert n2.check("n1", b"data", mac)
    assert not n2.check("n1", b"other", mac)
    assert not n3.check("n1", b"data", mac)  # n3 shares another key with n1
    assert not n2.check("n3", b"data", mac)  # claiming to be n3 fails
    assert not Macs("n2", MEMBERS, b"other-secret").check("n1", b"data", mac)


def test_a_token_is_unforgeable_it_is_checked_by_identity():
    keyring = TokenKeyring()
    n1, n2 = keyring.signer("n1"), keyring.signer("n2")
    sig = n1.sign(b"vc")
    assert n2.verify("n1", b"vc", sig)
    assert not n2.verify("n1", b"other", sig)
    assert not n2.verify("n3", b"vc", sig)
    # n3 mints a token claiming n1: same fields, not n1's seal.
    forged = Token("n1", sig.digest, keyring.signer("n3")._seal)
    assert not n2.verify("n1", b"vc", forged)
    # A token of another keyring (another run) is no signature here.
    assert not n2.verify("n1", b"vc", TokenKeyring().signer("n1").sign(b"vc"))


def test_ed25519_signatures_verify_and_reject_forgeries():
    n1 = Ed25519Signer("n1", MEMBERS, b"cluster")
    n2 = Ed25519Signer("n2", MEMBERS, b"cluster")
    sig = n1.sign(b"checkpoint")
    assert n2.verify("n1", b"checkpoint", sig)
    assert not n2.verify("n1", b"checkpoint!", sig)
    assert not n2.verify("n2", b"checkpoint", sig)
    assert not n2.verify("n1", b"checkpoint", b"garbage")
