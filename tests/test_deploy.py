"""Flashing to a gateway directory: versions, the atomic `current` pointer, refusals, rollback, pruning."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from gru_edge.edge_runtime import deploy
from gru_edge.edge_runtime.deploy import DeployError, current_version, flash_local, list_versions, rollback
from test_deploy_support import make_bundle, rewrite_manifest


@pytest.fixture()
def bundles(tmp_path):
    return [make_bundle(tmp_path / f"b{i}", bias=0.1 * i) for i in range(1, 5)]


def live_bytes(gw: Path) -> bytes:
    return (gw / "current" / "model.onnx").read_bytes()


def test_flash_twice_tampered_third_refused_then_rollback(tmp_path, bundles):
    """The checked scenario, end to end through the gru-edge CLI."""
    from gru_edge.cli import cli

    gw = tmp_path / "gw"
    run = CliRunner().invoke
    r1 = run(cli, ["flash", str(bundles[0]), "--to", str(gw)])
    assert r1.exit_code == 0, r1.output
    first = current_version(gw)
    r2 = run(cli, ["flash", str(bundles[1]), "--to", str(gw)])
    assert r2.exit_code == 0, r2.output
    second = current_version(gw)
    assert [v.id for v in list_versions(gw)] == [first.id, second.id]
    assert second.seq == first.seq + 1 and os.readlink(gw / "current") == second.relpath
    assert live_bytes(gw) == (bundles[1] / "model.onnx").read_bytes()

    tampered = bundles[2]
    data = bytearray((tampered / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x40
    (tampered / "model.onnx").write_bytes(bytes(data))
    r3 = run(cli, ["flash", str(tampered), "--to", str(gw)])
    assert r3.exit_code != 0
    assert "does not match the manifest" in r3.output and "model.onnx" in r3.output
    assert current_version(gw) == second and len(list_versions(gw)) == 2
    assert os.listdir(gw / ".incoming") == []

    r4 = run(cli, ["rollback", "--to", str(gw)])
    assert r4.exit_code == 0, r4.output
    assert current_version(gw) == first
    assert live_bytes(gw) == (bundles[0] / "model.onnx").read_bytes()
    actions = [(h["action"], h["version"]) for h in deploy.read_history(gw)]
    assert actions == [("flash", first.id), ("flash", second.id), ("rollback", first.id)]

    listing = run(cli, ["versions", "--to", str(gw)])
    assert listing.exit_code == 0 and f"* {first.id}" in listing.output and f"  {second.id}" in listing.output


def test_same_bundle_twice_is_two_versions(tmp_path, bundles):
    gw = tmp_path / "gw"
    a = flash_local(bundles[0], gw)
    b = flash_local(bundles[0], gw)
    assert a.version.id != b.version.id and a.version.id.split("-")[1] == b.version.id.split("-")[1]
    assert current_version(gw) == b.version and b.previous == a.version


def test_rollback_to_named_version_and_no_older(tmp_path, bundles):
    gw = tmp_path / "gw"
    acts = [flash_local(b, gw) for b in bundles[:3]]
    assert rollback(gw, version="v1").version == acts[0].version
    with pytest.raises(DeployError, match="no version older"):
        rollback(gw)
    # Forward again by hash prefix.
    prefix = acts[2].version.id.split("-")[1][:8]
    assert rollback(gw, version=prefix).version == acts[2].version
    with pytest.raises(DeployError, match="already live"):
        rollback(gw, version=acts[2].version.id)
    with pytest.raises(DeployError, match="no version 'v9'"):
        rollback(gw, version="v9")


def test_keep_prunes_oldest_but_never_the_live_one(tmp_path, bundles):
    gw = tmp_path / "gw"
    acts = [flash_local(b, gw, keep=2) for b in bundles[:3]]
    assert [v.id for v in list_versions(gw)] == [acts[1].version.id, acts[2].version.id]
    assert acts[2].pruned == [acts[0].version.id]
    rollback(gw)  # live = second
    act = flash_local(bundles[3], gw, keep=1)
    assert [v.id for v in list_versions(gw)] == [act.version.id]
    assert os.listdir(gw / ".trash") == []


@pytest.mark.parametrize("damage, message", [
    ("truncate", "truncated or replaced"),
    ("flip", "does not match the manifest"),
    ("missing", "is missing"),
    ("traversal", "points outside the bundle"),
    ("bad_name", "cannot be used as a gateway folder name"),
    ("golden", "golden self-test failed"),
    ("bad_alarm", "unknown alarm rule"),
    ("symlink_out", "resolves outside the bundle"),
    ("not_json", "not valid JSON"),
])
def test_broken_bundles_are_refused_and_the_old_one_stays_live(tmp_path, bundles, damage, message):
    gw = tmp_path / "gw"
    good = flash_local(bundles[0], gw)
    bad = bundles[1]
    model = bad / "model.onnx"
    if damage == "truncate":
        model.write_bytes(model.read_bytes()[:-10])
    elif damage == "flip":
        data = bytearray(model.read_bytes())
        data[-5] ^= 1
        model.write_bytes(bytes(data))
    elif damage == "missing":
        model.unlink()
    elif damage == "traversal":
        d = json.loads((bad / "manifest.json").read_text())
        d["files"][0]["path"] = "../../etc/passwd"
        rewrite_manifest(bad, files=d["files"])
    elif damage == "bad_name":
        rewrite_manifest(bad, name="../evil")
    elif damage == "golden":
        d = json.loads((bad / "manifest.json").read_text())
        d["golden"]["probes"][0]["expected_scores"][0] += 0.25
        rewrite_manifest(bad, golden=d["golden"])
    elif damage == "bad_alarm":
        rewrite_manifest(bad, alarm={"min_consecutve": 3})
    elif damage == "symlink_out":
        outside = tmp_path / "outside.onnx"
        shutil.move(model, outside)
        model.symlink_to(outside)
    elif damage == "not_json":
        (bad / "manifest.json").write_text('{"schema_version": 1,\n "name": }')
    with pytest.raises(DeployError, match=message):
        flash_local(bad, gw)
    assert current_version(gw) == good.version
    assert [v.id for v in list_versions(gw)] == [good.version.id]
    assert os.listdir(gw / ".incoming") == []
    assert deploy.verify_gateway(gw)["ok"]


def _upload(gw: Path, bundle: Path) -> str:
    """Put a bundle into .incoming/ the way an SSH upload does (files only, no checks)."""
    deploy.ensure_gateway(gw)
    token = deploy._new_incoming(gw, "ssh").name
    shutil.copytree(bundle, gw / ".incoming" / token)
    return token


@pytest.mark.parametrize("damage, message", [
    ("extra", "unexpected file 'run.sh'"),
    ("symlink", "is a symlink"),
    ("flip", "does not match the manifest"),
])
def test_uploads_are_checked_again_on_the_gateway(tmp_path, bundles, damage, message):
    gw = tmp_path / "gw"
    good = flash_local(bundles[0], gw)
    token = _upload(gw, bundles[1])
    up = gw / ".incoming" / token
    if damage == "extra":
        (up / "run.sh").write_text("#!/bin/sh\n")
    elif damage == "symlink":
        (up / "model.onnx").unlink()
        (up / "model.onnx").symlink_to(bundles[1] / "model.onnx")
    else:
        data = bytearray((up / "model.onnx").read_bytes())
        data[10] ^= 1
        (up / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(DeployError, match=message):
        deploy.activate_upload(gw, token)
    assert current_version(gw) == good.version and not up.exists()
    with pytest.raises(DeployError, match="is not one this tool creates"):
        deploy.activate_upload(gw, "../models")


def test_litter_is_never_a_version_and_is_cleaned(tmp_path, bundles):
    gw = tmp_path / "gw"
    first = flash_local(bundles[0], gw)
    # What killed writers leave, plus things that merely look like versions.
    (gw / ".incoming" / "local-20260101T000000Z-abcdefabcdef").mkdir()
    (gw / ".trash" / "v1-000000000000-dead").mkdir()
    os.symlink("models/pump/v7-000000000000", gw / ".current.tmp-1-ab")
    (gw / "models" / "pump" / ".v2-0123456789ab").mkdir()
    (gw / "models" / "pump" / "v3-0123456789ab.tmp").mkdir()
    (gw / "models" / "pump" / "v04-0123456789ab").mkdir()
    (gw / "models" / ".hidden" / "v5-0123456789ab").mkdir(parents=True)
    assert [v.id for v in list_versions(gw)] == [first.version.id]
    second = flash_local(bundles[1], gw)
    assert second.version.seq == 2
    assert os.listdir(gw / ".incoming") == [] and os.listdir(gw / ".trash") == []
    assert not (gw / ".current.tmp-1-ab").exists()


def test_current_as_pointer_file_and_dangling_pointer(tmp_path, bundles):
    gw = tmp_path / "gw"
    act = flash_local(bundles[0], gw)
    (gw / "current").unlink()
    (gw / "current").write_text(act.version.relpath + "\n")  # the fallback on filesystems without symlinks
    assert current_version(gw) == act.version
    (gw / "current").unlink()
    os.symlink("models/pump/v9-0123456789ab", gw / "current")
    assert current_version(gw) is None
    os.unlink(gw / "current")
    os.symlink("../../etc", gw / "current")
    assert current_version(gw) is None


def test_refuses_a_foreign_non_empty_directory(tmp_path, bundles):
    target = tmp_path / "home"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(DeployError, match="not a gru-edge gateway directory"):
        flash_local(bundles[0], target)
    assert sorted(os.listdir(target)) == ["notes.txt"]


def test_parse_target():
    t = deploy.parse_target("ssh://pi@gw-1.local:2222/var/lib/gru-edge/")
    assert (t.user, t.host, t.port, t.path) == ("pi", "gw-1.local", 2222, "/var/lib/gru-edge")
    assert deploy.parse_target("ssh://gw/x").user is None
    assert deploy.parse_target("/mnt/card/gw") == Path("/mnt/card/gw")
    for bad in ("ssh://pi@gw", "ssh://pi@gw:99999/x", "http://gw/x", "ssh://-oProxyCommand=x/y"):
        with pytest.raises(DeployError):
            deploy.parse_target(bad)


def test_gateway_side_command_line(tmp_path, bundles, capsys):
    gw = tmp_path / "gw"
    assert deploy.main(["install", str(bundles[0]), str(gw)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["version"]["seq"] == 1 and out["previous"] is None
    assert deploy.main(["rollback", str(gw)]) == 2
    assert "no version older" in capsys.readouterr().err
    assert deploy.main(["verify", str(gw)]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


def _tar_with(members) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                info.type, info.linkname = tarfile.SYMTYPE, data
                tar.addfile(info)
    return buf.getvalue()


def test_receive_stream_activates_a_bundle_and_refuses_hostile_archives(tmp_path, bundles):
    import io

    gw = tmp_path / "gw"
    staging = tmp_path / "staging"
    deploy.stage_bundle(bundles[0], staging)
    act = deploy.receive_stream(gw, io.BytesIO(deploy._tar(staging)))
    assert current_version(gw) == act.version
    good = [(p.name, "file", p.read_bytes()) for p in staging.iterdir()]
    for extra, message in [(("../../evil", "file", b"x"), "points outside the bundle"),
                           (("/etc/evil", "file", b"x"), "points outside the bundle"),
                           (("link", "symlink", "/etc/passwd"), "not a regular file")]:
        with pytest.raises(DeployError, match=message):
            deploy.receive_stream(gw, io.BytesIO(_tar_with(good + [extra])))
    assert not (tmp_path / "evil").exists()
    assert current_version(gw) == act.version and os.listdir(gw / ".incoming") == []
