"""HMAC-SHA256 bundle signatures: signing, verification, and refusal everywhere a key is given."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from gru_edge.edge_runtime import deploy, signing
from gru_edge.edge_runtime.bundle import BundleError, open_bundle
from gru_edge.edge_runtime.signing import SignatureError, load_key, sign_bundle, verify_signature
from test_deploy_support import make_bundle, rewrite_manifest

KEY = b"0123456789abcdef0123456789abcdef"
OTHER = b"fedcba9876543210fedcba9876543210"


@pytest.fixture()
def bundle(tmp_path):
    return make_bundle(tmp_path / "b")


def test_sign_then_verify(bundle):
    sig = sign_bundle(bundle, KEY)
    assert verify_signature(bundle, KEY) == sig
    on_disk = json.loads((bundle / "signature.json").read_text())
    assert on_disk["algorithm"] == "hmac-sha256" and on_disk["key_id"] == signing.key_id(KEY)
    assert KEY.decode() not in (bundle / "signature.json").read_text()
    open_bundle(bundle, key=KEY)


def test_wrong_key_unsigned_and_modified_manifest_are_refused(bundle):
    with pytest.raises(SignatureError, match="unsigned"):
        verify_signature(bundle, KEY)
    sign_bundle(bundle, KEY)
    with pytest.raises(SignatureError, match=f"signed with key {signing.key_id(KEY)}"):
        verify_signature(bundle, OTHER)
    rewrite_manifest(bundle, notes={"changed": True})
    with pytest.raises(SignatureError, match="modified after it was signed"):
        verify_signature(bundle, KEY)
    with pytest.raises(BundleError, match="modified after it was signed"):
        open_bundle(bundle, key=KEY)
    open_bundle(bundle)  # without a key, an unsigned-or-stale signature is not checked


def test_refuses_to_sign_a_broken_bundle(bundle):
    (bundle / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(SignatureError, match="refusing to sign"):
        sign_bundle(bundle, KEY)
    assert not (bundle / "signature.json").exists()


def test_key_files(tmp_path):
    good = tmp_path / "k"
    good.write_text(KEY.decode() + "\n")
    assert load_key(good) == KEY
    short = tmp_path / "short"
    short.write_text("abc\n")
    with pytest.raises(SignatureError, match="at least 16"):
        load_key(short)
    with pytest.raises(SignatureError, match="key file not found"):
        load_key(tmp_path / "nope")


def test_flash_with_a_key_refuses_unsigned_and_wrongly_signed(tmp_path):
    gw = tmp_path / "gw"
    good = make_bundle(tmp_path / "good", bias=0.1)
    sign_bundle(good, KEY)
    live = deploy.flash_local(good, gw, key=KEY).version
    assert (live.path / "signature.json").is_file()
    unsigned = make_bundle(tmp_path / "unsigned", bias=0.2)
    with pytest.raises(deploy.DeployError, match="unsigned"):
        deploy.flash_local(unsigned, gw, key=KEY)
    other = make_bundle(tmp_path / "other", bias=0.3)
    sign_bundle(other, OTHER)
    with pytest.raises(deploy.DeployError, match="wrong signature"):
        deploy.flash_local(other, gw, key=KEY)
    assert deploy.current_version(gw) == live
    # A signed copy tampered on the gateway side (after upload) is refused there too.
    token = deploy._new_incoming(gw, "ssh").name
    import shutil

    shutil.copytree(good, gw / ".incoming" / token)
    rewrite_manifest(gw / ".incoming" / token, notes={"evil": 1})
    with pytest.raises(deploy.DeployError, match="modified after it was signed"):
        deploy.activate_upload(gw, token, key=KEY)
    assert deploy.current_version(gw) == live


def test_sign_command(tmp_path, bundle):
    from gru_edge.cli import cli

    key = tmp_path / "key"
    key.write_text(KEY.decode())
    r = CliRunner().invoke(cli, ["sign", str(bundle), "--key-file", str(key)])
    assert r.exit_code == 0, r.output
    assert signing.key_id(KEY) in r.output
    verify_signature(bundle, KEY)
    r = CliRunner().invoke(cli, ["flash", str(bundle), "--to", str(tmp_path / "gw"), "--key-file", str(key)])
    assert r.exit_code == 0, r.output
    bad = CliRunner().invoke(cli, ["sign", str(bundle), "--key-file", str(tmp_path / "missing")])
    assert bad.exit_code != 0 and "key file not found" in bad.output
