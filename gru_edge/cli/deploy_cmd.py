"""``gru-edge flash``, ``rollback``, ``versions`` and ``sign``: putting bundles on gateways."""

from __future__ import annotations

import functools
import json

import click

from .errors import friendly_errors


def _deploy_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from ..edge_runtime.alarms import AlarmConfigError
        from ..edge_runtime.deploy import DeployError
        from ..edge_runtime.signing import SignatureError

        try:
            return fn(*args, **kwargs)
        except (DeployError, SignatureError, AlarmConfigError) as e:
            raise click.ClickException(str(e)) from e

    return wrapper


def _target_options(fn):
    options = [
        click.option("--to", "target", required=True,
                     help="gateway directory (local or a mounted card), or ssh://user@host[:port]/DIR"),
        click.option("--identity", "-i", type=click.Path(exists=True, dir_okay=False),
                     help="SSH private key file (ssh -i)"),
        click.option("--ssh-option", "-o", multiple=True, metavar="OPT",
                     help="extra ssh -o option, e.g. -o StrictHostKeyChecking=accept-new (repeatable)"),
        click.option("--remote-python", default="python3", show_default=True,
                     help="python on the gateway that has gru-edge installed"),
        click.option("--json", "as_json", is_flag=True, help="print the result as JSON"),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


remote_key_option = click.option(
    "--remote-key-file", default=None,
    help="path of the HMAC key on the SSH gateway: the gateway refuses bundles not signed with it")


def _ssh(identity, ssh_option, remote_python, transport="auto"):
    from ..edge_runtime.deploy import SshOptions

    return SshOptions(identity=identity, options=tuple(ssh_option), remote_python=remote_python, transport=transport)


def _load_key(key_file):
    if not key_file:
        return None
    from ..edge_runtime.signing import load_key

    return load_key(key_file)


def _show(activation, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(activation.to_dict(), indent=1))
        return
    click.echo(activation.summary())


@click.command()
@click.argument("bundle_dir", type=click.Path(exists=True, file_okay=False))
@_target_options
@remote_key_option
@click.option("--keep", default=3, show_default=True, type=click.IntRange(min=1),
              help="versions to keep on the gateway (the live one always stays)")
@click.option("--key-file", type=click.Path(dir_okay=False), default=None,
              help="HMAC key: refuse the bundle unless it is signed with this key")
@click.option("--transport", type=click.Choice(["auto", "ssh", "rsync", "scp"]), default="auto", show_default=True,
              help="how files travel over SSH: ssh = a tar stream in the same session that activates "
                   "(auto); rsync/scp upload first, then activate")
@friendly_errors
@_deploy_errors
def flash(bundle_dir, target, identity, ssh_option, remote_python, as_json, remote_key_file, keep, key_file,
          transport) -> None:
    """Copy BUNDLE_DIR to a gateway and make it live, atomically.

    The copy becomes a new version (models/<name>/v<N>-<hash>/) and `current` switches to it only
    after every file hash and the bundle's golden self-test pass on the target. The last --keep
    versions stay for `gru-edge rollback`.
    """
    from ..edge_runtime.deploy import flash as run_flash

    activation = run_flash(bundle_dir, target, keep=keep, key=_load_key(key_file), remote_key_file=remote_key_file,
                           ssh=_ssh(identity, ssh_option, remote_python, transport),
                           log=None if as_json else click.echo)
    _show(activation, as_json)


@click.command()
@_target_options
@remote_key_option
@click.option("--version", "version", default=None,
              help="version to go back to: full id, v<N>, or a hash prefix (default: the one before the live one)")
@click.option("--key-file", type=click.Path(dir_okay=False), default=None,
              help="HMAC key: refuse to roll back to a version not signed with this key")
@friendly_errors
@_deploy_errors
def rollback(target, identity, ssh_option, remote_python, as_json, remote_key_file, version, key_file) -> None:
    """Point a gateway's `current` back at the previous version (or --version), after re-verifying it."""
    from ..edge_runtime.deploy import rollback_target

    activation = rollback_target(target, version=version, key=_load_key(key_file), remote_key_file=remote_key_file,
                                 ssh=_ssh(identity, ssh_option, remote_python))
    _show(activation, as_json)


@click.command()
@_target_options
@friendly_errors
@_deploy_errors
def versions(target, identity, ssh_option, remote_python, as_json) -> None:
    """List the versions kept on a gateway and which one is live."""
    from ..edge_runtime.deploy import list_target

    status = list_target(target, ssh=_ssh(identity, ssh_option, remote_python))
    if as_json:
        click.echo(json.dumps(status, indent=1))
        return
    live = (status.get("current") or {}).get("id")
    if not status["versions"]:
        click.echo(f"{target}: no versions")
        return
    for v in status["versions"]:
        click.echo(f"{'*' if v['id'] == live else ' '} {v['id']:<24} {v['name']}")
    if live is None:
        click.echo("(nothing is live: `current` is missing)")


@click.command()
@click.argument("bundle_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--key-file", type=click.Path(dir_okay=False), required=True, help="HMAC key file (>= 16 bytes)")
@friendly_errors
@_deploy_errors
def sign(bundle_dir, key_file) -> None:
    """Sign BUNDLE_DIR: HMAC-SHA256 of manifest.json (which holds every file's sha256) into signature.json.

    Make a key with: python3 -c "import secrets; print(secrets.token_hex(32))" > gru-edge.key
    """
    from ..edge_runtime.signing import sign_bundle

    sig = sign_bundle(bundle_dir, _load_key(key_file))
    click.echo(f"signed {bundle_dir}: key {sig.key_id}, manifest sha256 {sig.manifest_sha256[:16]}...")
