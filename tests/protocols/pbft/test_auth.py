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


def _cluster_keys() -> tuple[dict[str, bytes], dict[str, dict[str, bytes]]]:
    from consensuskit.core import keys

    seeds = {m: bytes([i + 1]) * 32 for i, m in enumerate(MEMBERS)}
    return seeds, {m: keys.public_keys(s) for m, s in seeds.items()}


def test_with_per_node_key_pairs_a_member_cannot_sign_as_another():
    """Real mode with node keys (core/keys.py): n1 holds its own secret key and everyone's
    public keys.  Whatever it signs verifies as n1's, never as n3's; with keys derived
    from the shared cluster key (the fallback) it could sign as anyone."""
    seeds, public = _cluster_keys()
    n2 = Ed25519Signer.from_node_keys("n2", MEMBERS, seeds["n2"], public)
    n1 = Ed25519Signer.from_node_keys("n1", MEMBERS, seeds["n1"], public)
    sig = n1.sign(b"view-change")
    assert n2.verify("n1", b"view-change", sig)
    assert not n2.verify("n3", b"view-change", sig)
    # n1 builds a signer that claims n3 but has only its own secret: still n1's key.
    pretender = Ed25519Signer.from_node_keys("n3", MEMBERS, seeds["n1"], public)
    assert not n2.verify("n3", b"view-change", pretender.sign(b"view-change"))
    # The shared-secret fallback: any member derives n3's private key.
    legacy_n2 = Ed25519Signer("n2", MEMBERS, b"cluster")
    assert legacy_n2.verify("n3", b"x", Ed25519Signer("n3", MEMBERS, b"cluster").sign(b"x"))


def test_with_per_node_key_pairs_a_mac_key_is_known_to_its_pair_only():
    seeds, public = _cluster_keys()
    macs = {m: Macs.from_node_keys(m, MEMBERS, seeds[m], public) for m in MEMBERS}
    mac = macs["n3"].mac("n2", b"prepare")
    assert macs["n2"].check("n3", b"prepare", mac)
    assert not macs["n4"].check("n3", b"prepare", mac)
    # n1 computes what it can for the pair (n3, n2): its own secret does not give it.
    forged = Macs.from_node_keys("n3", MEMBERS, seeds["n1"], public).mac("n2", b"prepare")
    assert not macs["n2"].check("n3", b"prepare", forged)
