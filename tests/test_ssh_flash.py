"""Flashing over SSH against a real sshd on 127.0.0.1, with a throwaway host key and user key.

The "gateway" is a folder on this machine reached through sshd; the remote side runs
``python -m gru_edge.edge_runtime.deploy`` with this interpreter, exactly as a gateway would with its own.
"""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gru_edge.edge_runtime import deploy
from gru_edge.edge_runtime.deploy import DeployError, SshOptions, current_version, list_versions
from gru_edge.edge_runtime.signing import sign_bundle
from test_deploy_support import free_port, make_bundle, require, stop, wait_port

KEY = b"0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    exe = require("sshd")
    require("ssh")
    keygen = require("ssh-keygen")
    root = os.geteuid() == 0
    d = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "user_key"):
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", "gru-edge-test", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "user_key.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    port = free_port()
    (d / "sshd_config").write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {d / 'host_key'}", f"PidFile {d / 'sshd.pid'}",
        f"AuthorizedKeysFile {d / 'authorized_keys'}", "PubkeyAuthentication yes", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no", "PermitRootLogin prohibit-password",
        "Subsystem sftp internal-sftp", "LogLevel ERROR", ""]))
    if root:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation directory
    log = open(d / "sshd.log", "w")
    proc = subprocess.Popen([exe, "-D", "-e", "-f", str(d / "sshd_config")], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc)
    except RuntimeError as e:
        stop(proc)
        message = f"sshd did not start: {e}: {(d / 'sshd.log').read_text()[-500:]}"
        if not root:
            pytest.skip(message + " (sshd normally needs root)")
        raise RuntimeError(message) from None
    host_pub = (d / "host_key.pub").read_text().split()
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    options = SshOptions(identity=str(d / "user_key"), remote_python=sys.executable,
                         options=(f"UserKnownHostsFile={d / 'known_hosts'}", "StrictHostKeyChecking=yes",
                                  "GlobalKnownHostsFile=/dev/null"))
    yield {"port": port, "user": getpass.getuser(), "options": options, "dir": d}
    stop(proc)
    log.close()


def url(sshd, path: Path) -> str:
    return f"ssh://{sshd['user']}@127.0.0.1:{sshd['port']}{path}"


def test_flash_twice_refuse_tampered_and_roll_back_over_ssh(tmp_path, sshd):
    gw = tmp_path / "gateway"
    ssh = sshd["options"]
    b1, b2 = make_bundle(tmp_path / "b1"), make_bundle(tmp_path / "b2", bias=0.3)
    a1 = deploy.flash(b1, url(sshd, gw), ssh=ssh)
    a2 = deploy.flash(b2, url(sshd, gw), ssh=ssh)
    assert [v.id for v in list_versions(gw)] == [a1.version.id, a2.version.id]
    assert current_version(gw).id == a2.version.id and a2.previous.id == a1.version.id
    assert (gw / "current" / "model.onnx").read_bytes() == (b2 / "model.onnx").read_bytes()
    assert os.listdir(gw / ".incoming") == []
    assert deploy.read_history(gw)[-1]["source"].endswith(str(b2.resolve()))

    # Tampered in transit (after the local checks passed): the gateway refuses it, `current` stays.
    staging = tmp_path / "staging"
    deploy.stage_bundle(make_bundle(tmp_path / "b3", bias=0.6), staging)
    data = bytearray((staging / "model.onnx").read_bytes())
    data[20] ^= 4
    (staging / "model.onnx").write_bytes(bytes(data))
    target = deploy.parse_target(url(sshd, gw))
    with pytest.raises(DeployError, match="does not match the manifest.*the live model is unchanged"):
        deploy._remote(target, ssh, ["receive", str(gw)], stdin=deploy._tar(staging))
    with pytest.raises(DeployError, match="truncated or not a bundle stream"):
        deploy._remote(target, ssh, ["receive", str(gw)], stdin=deploy._tar(staging)[:1000])
    assert current_version(gw).id == a2.version.id and os.listdir(gw / ".incoming") == []

    back = deploy.rollback_target(url(sshd, gw), ssh=ssh)
    assert back.version.id == a1.version.id and current_version(gw).id == a1.version.id


@pytest.mark.parametrize("transport", ["rsync", "scp"])
def test_upload_transports(tmp_path, sshd, transport):
    require(transport)
    gw = tmp_path / "gateway"
    ssh = SshOptions(**{**sshd["options"].__dict__, "transport": transport})
    b1 = make_bundle(tmp_path / "b1")
    a1 = deploy.flash(b1, url(sshd, gw), ssh=ssh)
    assert current_version(gw).id == a1.version.id and os.listdir(gw / ".incoming") == []
    assert (gw / "current" / "model.onnx").read_bytes() == (b1 / "model.onnx").read_bytes()
    if transport == "rsync":  # an upload tampered after it landed is refused by `activate`
        staging = tmp_path / "staging"
        deploy.stage_bundle(make_bundle(tmp_path / "b2", bias=0.2), staging)
        (staging / "model.onnx").write_bytes((staging / "model.onnx").read_bytes()[:-1])
        target = deploy.parse_target(url(sshd, gw))
        token = deploy._remote(target, ssh, ["prepare", str(gw)])["upload"]
        deploy._upload(target, ssh, staging, f"{gw}/.incoming/{token}")
        with pytest.raises(DeployError, match="truncated or replaced"):
            deploy._remote(target, ssh, ["activate", str(gw), "--upload", token])
        assert current_version(gw).id == a1.version.id and os.listdir(gw / ".incoming") == []


def test_cli_flash_rollback_versions_and_signature_on_the_gateway(tmp_path, sshd):
    from gru_edge.cli import cli

    gw = tmp_path / "gateway"
    opts = sshd["options"]
    common = ["--identity", opts.identity, "--remote-python", sys.executable]
    for o in opts.options:
        common += ["-o", o]
    key = tmp_path / "gateway.key"  # the gateway's copy of the key (same machine here)
    key.write_bytes(KEY)
    signed = make_bundle(tmp_path / "signed")
    sign_bundle(signed, KEY)
    unsigned = make_bundle(tmp_path / "unsigned", bias=0.2)
    run = CliRunner().invoke
    r = run(cli, ["flash", str(signed), "--to", url(sshd, gw), "--remote-key-file", str(key), *common])
    assert r.exit_code == 0, r.output
    live = current_version(gw)
    r = run(cli, ["flash", str(unsigned), "--to", url(sshd, gw), "--remote-key-file", str(key), *common])
    assert r.exit_code != 0 and "unsigned" in r.output
    assert current_version(gw) == live
    r = run(cli, ["flash", str(unsigned), "--to", url(sshd, gw), "--json", *common])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["version"]["seq"] == 2
    r = run(cli, ["versions", "--to", url(sshd, gw), *common])
    assert r.exit_code == 0 and f"  {live.id}" in r.output and "* v2-" in r.output
    r = run(cli, ["rollback", "--to", url(sshd, gw), "--version", live.id, *common])
    assert r.exit_code == 0, r.output
    assert current_version(gw) == live


def test_clear_errors_for_bad_hosts_and_missing_remote_tool(tmp_path, sshd):
    b = make_bundle(tmp_path / "b")
    opts = sshd["options"]
    wrong_python = SshOptions(**{**opts.__dict__, "remote_python": "/nonexistent/python3"})
    with pytest.raises(DeployError, match="cannot run .*install gru-edge there"):
        deploy.flash(b, url(sshd, tmp_path / "gw"), ssh=wrong_python)
    unknown_host = SshOptions(**{**opts.__dict__, "options": ("UserKnownHostsFile=/dev/null",
                                                              "GlobalKnownHostsFile=/dev/null",
                                                              "StrictHostKeyChecking=yes")})
    with pytest.raises(DeployError, match="(?s)ssh failed: .*[Hh]ost key verification failed"):
        deploy.flash(b, url(sshd, tmp_path / "gw"), ssh=unknown_host)
    closed = free_port()
    with pytest.raises(DeployError, match="ssh failed"):
        deploy.flash(b, f"ssh://{sshd['user']}@127.0.0.1:{closed}{tmp_path / 'gw'}", ssh=opts)
    assert not (tmp_path / "gw" / "current").exists()
