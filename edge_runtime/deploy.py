"""Gateway deployment: bundle versions side by side, an atomic ``current`` pointer, rollback.

Layout of a gateway directory (a folder on the gateway, or on a mounted card)::

    GATEWAY_DIR/
      .gru-edge-gateway                  marks the folder as a gateway (flash refuses other non-empty dirs)
      current -> models/<name>/<version> relative symlink, swapped by one rename
      models/<name>/<version>/           complete, verified bundles (version = v<seq>-<manifest sha256[:12]>)
      history.jsonl                      one JSON line per activation or rollback
      .incoming/                         uploads and staging copies: never a version
      .trash/                            versions being pruned
      .lock                              one writer at a time (flock; released when the writer dies)

Invariants, which the crash test checks after killing ``flash`` at random points:

- A directory is a version only when its name matches ``VERSION_RE`` and it sits directly under
  ``models/<name>/``. It gets there by a single rename, after its files passed the strict listing
  check, the signature check (given a key), every hash, the golden self-test on this machine, and
  were fsynced. So a version is always complete; a killed writer can leave at most a complete
  version that is not current.
- ``current`` changes by renaming a fresh symlink over the old one, and only ever to a version.
- Whatever a killed writer leaves lives in ``.incoming/``, ``.trash/`` or ``.current.tmp-*``,
  where no reader looks; the next writer removes it while holding the lock.

Versions are numbered across all bundle names of a gateway (``seq``), so "roll back one" means the
newest kept version older than the live one, whatever its name.

Flashing over SSH (``ssh://user@host[:port]/DIR``) stages a clean, verified copy locally, then
runs ``python -m gru_edge.edge_runtime.deploy`` on the gateway: by default one ssh session carries
the files as a tar stream into ``receive``; with ``transport="rsync"``/``"scp"`` the files are
uploaded into ``DIR/.incoming/`` first and ``activate`` runs in a second session. Either way the
verification and the switch happen on the target with its own runtime. This module is also that
remote command-line tool (see ``main``).
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import io
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import unquote, urlsplit

try:
    import fcntl
except ImportError:  # not POSIX: no flock; gateways run Linux
    fcntl = None  # type: ignore[assignment]

from .alarms import AlarmConfigError, AlarmRules
from .bundle import BundleError, open_bundle, read_manifest, verify_files
from .manifest import MANIFEST_NAME, Manifest
from .signing import SIGNATURE_NAME, SignatureError, verify_signature

MARKER = ".gru-edge-gateway"
CURRENT = "current"
MODELS = "models"
INCOMING = ".incoming"
TRASH = ".trash"
LOCK = ".lock"
HISTORY = "history.jsonl"
LAYOUT_VERSION = 1
DEFAULT_KEEP = 3
# An upload older than this with no activation is abandoned (its uploader died or lost the link).
STALE_UPLOAD_SECONDS = 3600.0
LOCK_TIMEOUT_SECONDS = 120.0
MAX_UPLOAD_BYTES = 2 << 30  # a bundle stream larger than this is not a bundle
TRANSPORTS = ("auto", "ssh", "rsync", "scp")

VERSION_RE = re.compile(r"^v([1-9][0-9]{0,8})-([0-9a-f]{12})$")
# A bundle name becomes a directory name: nothing that could climb out of models/ or hide itself.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_UPLOAD_RE = re.compile(r"^ssh-[0-9]{8}T[0-9]{6}Z-[0-9a-f]{12}$")
_KNOWN_ENTRIES = {MARKER, CURRENT, MODELS, INCOMING, TRASH, LOCK, HISTORY}


class DeployError(RuntimeError):
    """A flash, rollback or transfer was refused or failed; the live model is unchanged."""


@dataclass(frozen=True)
class Version:
    id: str  # e.g. "v3-1a2b3c4d5e6f"
    seq: int
    name: str  # bundle name (manifest.name)
    path: Path

    @property
    def relpath(self) -> str:
        return f"{MODELS}/{self.name}/{self.id}"

    def to_dict(self) -> dict:
        return {"id": self.id, "seq": self.seq, "name": self.name, "path": self.relpath}

    @classmethod
    def from_dict(cls, d: dict, gateway: str | Path = "") -> "Version":
        return cls(id=d["id"], seq=int(d["seq"]), name=d["name"], path=Path(gateway) / d["path"])


@dataclass(frozen=True)
class Activation:
    action: str  # "flash" or "rollback"
    gateway: str
    version: Version
    previous: Version | None
    pruned: list = field(default_factory=list)  # version ids removed to keep the last K
    versions: list = field(default_factory=list)  # list[Version] after the change, oldest first

    def to_dict(self) -> dict:
        return {"action": self.action, "gateway": self.gateway, "version": self.version.to_dict(),
                "previous": self.previous.to_dict() if self.previous else None, "pruned": list(self.pruned),
                "versions": [v.to_dict() for v in self.versions]}

    @classmethod
    def from_dict(cls, d: dict) -> "Activation":
        g = d["gateway"]
        return cls(action=d["action"], gateway=g, version=Version.from_dict(d["version"], g),
                   previous=Version.from_dict(d["previous"], g) if d.get("previous") else None,
                   pruned=list(d.get("pruned", [])), versions=[Version.from_dict(v, g) for v in d.get("versions", [])])

    def summary(self) -> str:
        prev = self.previous.id if self.previous else "none"
        pruned = ", ".join(self.pruned) or "none"
        return (f"{self.action}: {self.gateway}: current -> {self.version.relpath} (was {prev}); "
                f"{len(self.versions)} version(s) kept; pruned {pruned}")


# ---------------------------------------------------------------------------------------------
# Reading the layout (safe for any number of concurrent readers, e.g. the scoring loop)


def list_versions(gateway: str | Path) -> list[Version]:
    """Every version under ``models/``, oldest first. Anything not named like a version is ignored."""
    root = Path(gateway) / MODELS
    found = []
    try:
        names = sorted(os.scandir(root), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    for name_entry in names:
        if not NAME_RE.match(name_entry.name) or not name_entry.is_dir(follow_symlinks=False):
            continue
        for entry in os.scandir(name_entry.path):
            m = VERSION_RE.match(entry.name)
            if m and entry.is_dir(follow_symlinks=False):
                found.append(Version(id=entry.name, seq=int(m.group(1)), name=name_entry.name, path=Path(entry.path)))
    return sorted(found, key=lambda v: (v.seq, v.name))


def current_target(gateway: str | Path) -> str | None:
    """What ``current`` names (``models/<name>/<version>``), or None when there is none or it is malformed."""
    path = Path(gateway) / CURRENT
    try:
        text = os.readlink(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno != errno.EINVAL:  # EINVAL: a regular file (pointer-file fallback), read below
            return None
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError:
            return None
    return text if _parse_relpath(text) is not None else None


def current_version(gateway: str | Path) -> Version | None:
    """The live version, or None when ``current`` is missing, malformed or dangling."""
    text = current_target(gateway)
    if text is None:
        return None
    name, vid = _parse_relpath(text)  # type: ignore[misc]
    path = Path(gateway) / MODELS / name / vid
    if not path.is_dir() or path.is_symlink():
        return None
    return Version(id=vid, seq=int(VERSION_RE.match(vid).group(1)), name=name, path=path)  # type: ignore[union-attr]


def find_version(gateway: str | Path, spec: str) -> Version:
    """A kept version by full id, ``v<seq>``, bare ``<seq>``, or a unique manifest-hash prefix (>= 4 hex)."""
    versions = list_versions(gateway)
    spec = spec.strip()
    exact = [v for v in versions if v.id == spec or f"v{v.seq}" == spec or str(v.seq) == spec]
    if not exact and re.fullmatch(r"[0-9a-f]{4,12}", spec):
        exact = [v for v in versions if v.id.split("-", 1)[1].startswith(spec)]
    if len(exact) == 1:
        return exact[0]
    kept = ", ".join(v.id for v in versions) or "none"
    if not exact:
        raise DeployError(f"{gateway}: no version {spec!r}; kept versions: {kept}")
    raise DeployError(f"{gateway}: {spec!r} matches several versions ({', '.join(v.id for v in exact)}); give the full id")


def _parse_relpath(text: str) -> tuple[str, str] | None:
    parts = text.split("/")
    if len(parts) != 3 or parts[0] != MODELS or not NAME_RE.match(parts[1]) or not VERSION_RE.match(parts[2]):
        return None
    return parts[1], parts[2]


# ---------------------------------------------------------------------------------------------
# Writing the layout (one writer at a time, under the lock)


@contextmanager
def gateway_lock(gateway: Path, timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
    """Exclusive flock on ``GATEWAY_DIR/.lock``; the kernel drops it if the holder dies, so no stale locks."""
    fd = os.open(gateway / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                        raise DeployError(
                            f"{gateway}: another flash or rollback is running (lock held by pid {holder}); "
                            f"waited {timeout:.0f} s"
                        ) from None
                    time.sleep(0.05)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def ensure_gateway(gateway: str | Path) -> Path:
    """Create the layout in an empty or missing folder; refuse a non-empty folder that is not a gateway."""
    gateway = Path(gateway)
    if gateway.exists() and not gateway.is_dir():
        raise DeployError(f"{gateway}: exists and is not a directory")
    if not (gateway / MARKER).is_file():
        gateway.mkdir(parents=True, exist_ok=True)
        foreign = sorted(e for e in os.listdir(gateway) if e not in _KNOWN_ENTRIES and not e.startswith(".current.tmp-"))
        if foreign:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise DeployError(
                f"{gateway}: not empty and not a gru-edge gateway directory (holds {shown}); "
                "flash into an empty folder or an existing gateway folder"
            )
        _write_small(gateway / MARKER, json.dumps({"layout": LAYOUT_VERSION}) + "\n")
    for sub in (MODELS, INCOMING, TRASH):
        (gateway / sub).mkdir(exist_ok=True)
    return gateway


def clean_litter(gateway: Path, now: float | None = None) -> list[str]:
    """Remove what killed writers left behind. Call with the lock held. Returns what was removed."""
    now = time.time() if now is None else now
    removed = []
    for entry in os.scandir(gateway):
        if entry.name.startswith(".current.tmp-"):
            _remove(Path(entry.path))
            removed.append(entry.name)
    for sub in (INCOMING, TRASH):
        try:
            entries = list(os.scandir(gateway / sub))
        except FileNotFoundError:
            continue
        for entry in entries:
            # Local staging only happens under the lock, so any local-* here is dead. An SSH upload is
            # written before the uploader takes the lock, so it is only dead once it is old.
            stale = sub == TRASH or entry.name.startswith("local-")
            if not stale:
                try:
                    stale = now - entry.stat(follow_symlinks=False).st_mtime > STALE_UPLOAD_SECONDS
                except FileNotFoundError:
                    continue
            if stale:
                _remove(Path(entry.path))
                removed.append(f"{sub}/{entry.name}")
    return removed


def stage_bundle(bundle_dir: str | Path, dest: Path, key: bytes | None = None, self_test: bool = False) -> Manifest:
    """Check a source bundle and copy exactly its manifest, signature and listed files into new ``dest``.

    Only listed files travel, as regular files: a stray file or a symlink in the source never
    reaches a gateway.
    """
    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    check_name(manifest.name, bundle_dir)
    verify_files(bundle_dir, manifest)
    if key is not None:
        _check_signature(bundle_dir, key)
    if self_test:
        open_bundle(bundle_dir, threads=1, key=key)
    _check_alarm(manifest, bundle_dir)
    dest.mkdir(parents=False, exist_ok=False)
    names = [MANIFEST_NAME] + ([SIGNATURE_NAME] if (bundle_dir / SIGNATURE_NAME).is_file() else [])
    for rel in names + [e.path for e in manifest.files]:
        _copy_file(bundle_dir / rel, dest / rel)
    return manifest


def check_name(name: str, where: str | Path = "") -> None:
    if not NAME_RE.match(name or "") or name in (".", ".."):
        raise DeployError(
            f"{where}: bundle name {name!r} cannot be used as a gateway folder name "
            "(letters, digits, '.', '_' and '-' only, starting with a letter or digit)"
        )


def flash_local(bundle_dir: str | Path, gateway: str | Path, keep: int = DEFAULT_KEEP, key: bytes | None = None,
                log: Callable[[str], None] | None = None) -> Activation:
    """Copy, verify, self-test and activate a bundle in a gateway directory on this machine."""
    _check_keep(keep)
    gateway = ensure_gateway(gateway)
    with gateway_lock(gateway):
        clean_litter(gateway)
        incoming = _new_incoming(gateway, "local")
        try:
            stage_bundle(bundle_dir, incoming, key=key)
        except BaseException as e:
            _remove(incoming)
            if isinstance(e, (BundleError, SignatureError, AlarmConfigError)):
                raise DeployError(f"refusing {bundle_dir}: {e}; nothing changed in {gateway}") from e
            raise
        return _activate_locked(gateway, incoming, keep, key, action="flash", source=str(Path(bundle_dir).resolve()),
                                log=log)


def activate_upload(gateway: str | Path, token: str, keep: int = DEFAULT_KEEP, key: bytes | None = None,
                    source: str = "") -> Activation:
    """Activate a bundle uploaded into ``.incoming/<token>`` (the gateway side of an SSH flash)."""
    _check_keep(keep)
    gateway = Path(gateway)
    if not (gateway / MARKER).is_file():
        raise DeployError(f"{gateway}: not a gru-edge gateway directory")
    if not _UPLOAD_RE.match(token):
        raise DeployError(f"upload name {token!r} is not one this tool creates")
    incoming = gateway / INCOMING / token
    if not incoming.is_dir() or incoming.is_symlink():
        raise DeployError(f"{gateway}: no upload {INCOMING}/{token} (transfer incomplete or already cleaned)")
    with gateway_lock(gateway):
        clean_litter(gateway)
        if not incoming.is_dir():
            raise DeployError(f"{gateway}: upload {INCOMING}/{token} vanished while waiting for the lock")
        return _activate_locked(gateway, incoming, keep, key, action="flash", source=source)


def rollback(gateway: str | Path, version: str | None = None, key: bytes | None = None,
             log: Callable[[str], None] | None = None) -> Activation:
    """Point ``current`` at the previous version (or a named one) after verifying it again."""
    gateway = Path(gateway)
    if not (gateway / MARKER).is_file():
        raise DeployError(f"{gateway}: not a gru-edge gateway directory (nothing was ever flashed here)")
    with gateway_lock(gateway):
        clean_litter(gateway)
        versions = list_versions(gateway)
        live = current_version(gateway)
        if version is not None:
            target = find_version(gateway, version)
        else:
            if live is None:
                older = versions
            else:
                older = [v for v in versions if v.seq < live.seq]
            if not older:
                kept = ", ".join(v.id for v in versions) or "none"
                raise DeployError(f"{gateway}: no version older than {live.id if live else 'the live one'} to roll "
                                  f"back to (kept: {kept})")
            target = older[-1]
        if live is not None and target.id == live.id and target.name == live.name:
            raise DeployError(f"{gateway}: {target.id} is already live")
        try:
            _verify_bundle(target.path, key)
        except (BundleError, DeployError, SignatureError, AlarmConfigError) as e:
            raise DeployError(f"refusing to roll back to {target.id}: {e}") from e
        _switch_current(gateway, target)
        _append_history(gateway, "rollback", target, live, source="")
        if log:
            log(f"rolled back {gateway}: {live.id if live else 'none'} -> {target.id}")
        return Activation("rollback", str(gateway), target, live, [], list_versions(gateway))


def verify_gateway(gateway: str | Path, key: bytes | None = None, self_test: bool = True) -> dict:
    """Check ``current`` and every version (hashes, and the self-test when asked). For audits and tests."""
    gateway = Path(gateway)
    live = current_version(gateway)
    report: dict = {"gateway": str(gateway), "current": live.id if live else None, "versions": {}}
    for v in list_versions(gateway):
        try:
            if self_test:
                _verify_bundle(v.path, key)
            else:
                verify_files(v.path, read_manifest(v.path))
            report["versions"][v.id] = "ok"
        except (BundleError, DeployError, SignatureError, AlarmConfigError) as e:
            report["versions"][v.id] = f"FAILED: {e}"
    report["ok"] = live is not None and report["versions"].get(live.id) == "ok"
    return report


def _activate_locked(gateway: Path, incoming: Path, keep: int, key: bytes | None, action: str, source: str,
                     log: Callable[[str], None] | None = None) -> Activation:
    try:
        manifest = read_manifest(incoming)
        check_name(manifest.name, incoming.name)
        _check_listing(incoming, manifest)
        _verify_bundle(incoming, key)
        digest = hashlib.sha256((incoming / MANIFEST_NAME).read_bytes()).hexdigest()
        _fsync_tree(incoming)
    except BaseException as e:
        label = _manifest_name_or(incoming)
        _remove(incoming)
        if isinstance(e, (BundleError, SignatureError, AlarmConfigError, DeployError)):
            raise DeployError(f"refusing bundle {label}: {e}; the live model is unchanged") from e
        raise
    versions = list_versions(gateway)
    seq = max((v.seq for v in versions), default=0) + 1
    vid = f"v{seq}-{digest[:12]}"
    name_dir = gateway / MODELS / manifest.name
    if not name_dir.is_dir():
        name_dir.mkdir()
        _fsync_dir(gateway / MODELS)
    final = name_dir / vid
    os.rename(incoming, final)
    _fsync_dir(name_dir)
    _fsync_dir(incoming.parent)
    version = Version(id=vid, seq=seq, name=manifest.name, path=final)
    previous = current_version(gateway)
    _switch_current(gateway, version)
    pruned = _prune(gateway, keep, version)
    _append_history(gateway, action, version, previous, source)
    if log:
        log(f"activated {version.relpath} in {gateway}")
    return Activation(action, str(gateway), version, previous, pruned, list_versions(gateway))


def _manifest_name_or(path: Path) -> str:
    try:
        return repr(json.loads((path / MANIFEST_NAME).read_text(encoding="utf-8"))["name"])
    except Exception:  # the refusal message must not fail on the very manifest it refuses
        return "(unreadable manifest)"


def _verify_bundle(path: Path, key: bytes | None) -> Manifest:
    """Signature (given a key), every hash, the golden self-test on this machine, and sane alarm rules."""
    manifest, _model = open_bundle(path, threads=1, key=key)
    _check_alarm(manifest, path)
    return manifest


def _check_alarm(manifest: Manifest, where: Path) -> None:
    AlarmRules.from_dict(manifest.alarm, f"{where}/{MANIFEST_NAME}: alarm")


def _check_signature(bundle_dir: Path, key: bytes) -> None:
    try:
        verify_signature(bundle_dir, key)
    except SignatureError as e:
        raise DeployError(str(e)) from e


def _check_listing(bundle_dir: Path, manifest: Manifest) -> None:
    """An uploaded bundle holds exactly its manifest, optional signature and listed files, all regular files."""
    allowed = {MANIFEST_NAME, SIGNATURE_NAME} | {e.path for e in manifest.files}
    for root, dirs, files in os.walk(bundle_dir):
        for name in dirs + files:
            full = Path(root) / name
            rel = full.relative_to(bundle_dir).as_posix()
            if full.is_symlink():
                raise DeployError(f"{bundle_dir}: {rel!r} is a symlink; a bundle holds regular files only")
            if name in files:
                if not full.is_file():
                    raise DeployError(f"{bundle_dir}: {rel!r} is not a regular file")
                if rel not in allowed:
                    raise DeployError(f"{bundle_dir}: unexpected file {rel!r}: not listed in the manifest")


def _switch_current(gateway: Path, version: Version) -> None:
    tmp = gateway / f".current.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        os.symlink(version.relpath, tmp)
    except OSError as e:
        # Filesystems without symlinks (FAT on some cards): a pointer file, replaced just as atomically.
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise
        _write_small(tmp, version.relpath + "\n")
    os.replace(tmp, gateway / CURRENT)
    _fsync_dir(gateway)


def _prune(gateway: Path, keep: int, live: Version) -> list[str]:
    versions = list_versions(gateway)
    keep_ids = {(v.name, v.id) for v in versions[-keep:]} | {(live.name, live.id)}
    pruned = []
    for v in versions:
        if (v.name, v.id) in keep_ids:
            continue
        # One rename makes the version disappear; the slow delete happens in .trash/.
        doomed = gateway / TRASH / f"{v.id}-{secrets.token_hex(4)}"
        os.rename(v.path, doomed)
        _remove(doomed)
        pruned.append(v.id)
        try:
            v.path.parent.rmdir()  # the name's folder, once its last version is gone
        except OSError:
            pass
    return pruned


def _append_history(gateway: Path, action: str, version: Version, previous: Version | None, source: str) -> None:
    record = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "action": action,
              "version": version.id, "name": version.name, "previous": previous.id if previous else None}
    if source:
        record["source"] = source
    fd = os.open(gateway / HISTORY, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)


def read_history(gateway: str | Path) -> list[dict]:
    """Activation records, oldest first; a line torn by a crash is skipped."""
    out = []
    try:
        lines = (Path(gateway) / HISTORY).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _new_incoming(gateway: Path, kind: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return gateway / INCOMING / f"{kind}-{stamp}-{secrets.token_hex(6)}"


def _check_keep(keep: int) -> None:
    if not isinstance(keep, int) or keep < 1:
        raise DeployError(f"--keep must be an integer >= 1 (the live version always stays), got {keep!r}")


def _copy_file(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fi, open(dst, "xb") as fo:
        shutil.copyfileobj(fi, fo, 1 << 20)


def _write_small(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _fsync_tree(root: Path) -> None:
    # The rename into models/ must never expose a version whose data is still only in the page cache.
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories; the rename is still atomic
        pass
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        try:
            path.unlink()
        except FileNotFoundError:
            pass
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Targets: a local folder or ssh://user@host[:port]/DIR


@dataclass(frozen=True)
class SshTarget:
    host: str
    path: str
    user: str | None = None
    port: int | None = None

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def __str__(self) -> str:
        port = f":{self.port}" if self.port else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ssh://{self.user + '@' if self.user else ''}{host}{port}{self.path}"


@dataclass(frozen=True)
class SshOptions:
    identity: str | None = None  # private key file (ssh -i)
    options: tuple = ()  # extra ssh -o options, e.g. ("StrictHostKeyChecking=accept-new",)
    remote_python: str = "python3"  # the gateway's python with gru-edge installed
    # "ssh": the bundle travels as a tar stream inside the one ssh session that also activates it
    # (one connection, nothing half-uploaded is left if the link drops); "rsync"/"scp": upload
    # first, then activate in a second session. "auto" = "ssh".
    transport: str = "auto"
    timeout: float = 600.0


def parse_target(text: str) -> Path | SshTarget:
    if not text.startswith("ssh://"):
        if "://" in text:
            raise DeployError(f"target {text!r}: only local directories and ssh://user@host[:port]/DIR are supported")
        return Path(text)
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        raise DeployError(f"target {text!r}: the port is not a number in 1..65535") from None
    host = parts.hostname
    if not host or host.startswith("-"):
        raise DeployError(f"target {text!r}: no host (expected ssh://user@host[:port]/DIR)")
    path = unquote(parts.path)
    if not path.startswith("/") or path == "/" or parts.query or parts.fragment:
        raise DeployError(f"target {text!r}: expected an absolute gateway directory after the host, "
                          "e.g. ssh://pi@gw1/var/lib/gru-edge")
    user = unquote(parts.username) if parts.username else None
    if user is not None and (not user or user.startswith("-")):
        raise DeployError(f"target {text!r}: bad user name {user!r}")
    return SshTarget(host=host, path=path.rstrip("/"), user=user, port=port)


def flash(bundle_dir: str | Path, target: str | Path | SshTarget, keep: int = DEFAULT_KEEP,
          key: bytes | None = None, remote_key_file: str | None = None, ssh: SshOptions | None = None,
          log: Callable[[str], None] | None = None) -> Activation:
    """Flash to a local gateway directory or over SSH. ``key`` checks the signature here (and, for a
    local target, on the copy too); ``remote_key_file`` is the key's path on an SSH gateway."""
    dest = parse_target(target) if isinstance(target, str) else target
    if isinstance(dest, SshTarget):
        return _flash_ssh(bundle_dir, dest, keep, key, remote_key_file, ssh or SshOptions(), log)
    return flash_local(bundle_dir, dest, keep=keep, key=key, log=log)


def rollback_target(target: str | Path | SshTarget, version: str | None = None, key: bytes | None = None,
                    remote_key_file: str | None = None, ssh: SshOptions | None = None) -> Activation:
    dest = parse_target(target) if isinstance(target, str) else target
    if isinstance(dest, SshTarget):
        args = ["rollback", dest.path] + (["--version", version] if version else [])
        args += ["--key-file", remote_key_file] if remote_key_file else []
        return Activation.from_dict(_remote(dest, ssh or SshOptions(), args))
    return rollback(dest, version=version, key=key)


def list_target(target: str | Path | SshTarget, ssh: SshOptions | None = None) -> dict:
    dest = parse_target(target) if isinstance(target, str) else target
    if isinstance(dest, SshTarget):
        return _remote(dest, ssh or SshOptions(), ["list", dest.path])
    return _status(Path(dest))


def _status(gateway: Path) -> dict:
    live = current_version(gateway)
    return {"gateway": str(gateway), "current": live.to_dict() if live else None,
            "versions": [v.to_dict() for v in list_versions(gateway)], "history": read_history(gateway)[-10:]}


def _flash_ssh(bundle_dir, target: SshTarget, keep: int, key: bytes | None, remote_key_file: str | None,
               ssh: SshOptions, log: Callable[[str], None] | None) -> Activation:
    _check_keep(keep)
    if ssh.transport not in TRANSPORTS:
        raise DeployError(f"unknown transport {ssh.transport!r}; expected one of {', '.join(TRANSPORTS)}")
    say = log or (lambda _m: None)
    with tempfile.TemporaryDirectory(prefix="gru-edge-flash-") as tmp:
        staging = Path(tmp) / "bundle"
        # Verify fully here first: a bundle that cannot pass is refused before any byte is sent.
        manifest = stage_bundle(bundle_dir, staging, key=key, self_test=True)
        tail = ["--keep", str(keep), "--source", f"{os.uname().nodename}:{Path(bundle_dir).resolve()}"]
        tail += ["--key-file", remote_key_file] if remote_key_file else []
        if ssh.transport in ("auto", "ssh"):
            say(f"sending {manifest.name} to {target} over ssh")
            return Activation.from_dict(_remote(target, ssh, ["receive", target.path, *tail], stdin=_tar(staging)))
        info = _remote(target, ssh, ["prepare", target.path])
        token = info["upload"]
        remote_dir = f"{target.path}/{INCOMING}/{token}"
        say(f"uploading {manifest.name} to {target.destination}:{remote_dir} with {ssh.transport}")
        _upload(target, ssh, staging, remote_dir)
        return Activation.from_dict(_remote(target, ssh, ["activate", target.path, "--upload", token, *tail]))


def _tar(staging: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            tar.add(path, arcname=path.relative_to(staging).as_posix(), recursive=False)
    return buf.getvalue()


def receive_stream(gateway: str | Path, stream, keep: int = DEFAULT_KEEP, key: bytes | None = None,
                   source: str = "", limit: int = MAX_UPLOAD_BYTES) -> Activation:
    """The gateway side of the ``ssh`` transport: unpack a tar of regular files, then activate it.

    Only plain files and folders with relative, non-climbing names are accepted; anything else
    (links, devices, absolute or ``..`` paths) refuses the whole upload.
    """
    _check_keep(keep)
    gateway = ensure_gateway(gateway)
    token = _new_incoming(gateway, "ssh").name
    dest = gateway / INCOMING / token
    dest.mkdir()
    try:
        total = 0
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                name = member.name
                parts = name.split("/")
                if (not name or name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts)):
                    raise DeployError(f"upload holds the path {name!r}, which points outside the bundle")
                if member.isdir():
                    (dest / name).mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isfile():
                    raise DeployError(f"upload holds {name!r}, which is not a regular file (links are refused)")
                total += member.size
                if total > limit:
                    raise DeployError(f"upload is larger than {limit} bytes")
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                with open(dest / name, "xb") as f:
                    shutil.copyfileobj(src, f, 1 << 20)
    except (tarfile.TarError, EOFError) as e:
        _remove(dest)
        raise DeployError(f"upload is truncated or not a bundle stream: {e}") from None
    except BaseException:
        _remove(dest)
        raise
    return activate_upload(gateway, token, keep=keep, key=key, source=source)


def _ssh_command(target: SshTarget, ssh: SshOptions) -> list[str]:
    cmd = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20"]
    if target.port:
        cmd += ["-p", str(target.port)]
    if ssh.identity:
        cmd += ["-i", ssh.identity, "-o", "IdentitiesOnly=yes"]
    for opt in ssh.options:
        cmd += ["-o", opt]
    return cmd


def _remote(target: SshTarget, ssh: SshOptions, args: list[str], stdin: bytes | None = None) -> dict:
    """Run this module on the gateway; its stdout is one JSON object, a refusal exits 2 with a message."""
    remote = shlex.join([ssh.remote_python, "-m", "gru_edge.edge_runtime.deploy", *args])
    cmd = _ssh_command(target, ssh) + [target.destination, remote]
    proc = _run(cmd, ssh.timeout, f"ssh to {target.destination}", stdin=stdin)
    if proc.returncode == 0:
        try:
            return json.loads(proc.stdout.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            raise DeployError(f"{target}: unexpected reply from the gateway: {proc.stdout.strip()[-300:]!r}") from None
    err = proc.stderr.strip()
    if proc.returncode == 255:
        raise DeployError(f"{target}: ssh failed: {err[-500:] or 'connection error'}")
    if proc.returncode == 127 or "No module named" in err:
        raise DeployError(
            f"{target}: the gateway cannot run `{ssh.remote_python} -m gru_edge.edge_runtime.deploy` "
            f"({err.splitlines()[-1] if err else 'command not found'}); install gru-edge there or pass --remote-python"
        )
    last = err.splitlines()[-1] if err else f"exit status {proc.returncode}"
    raise DeployError(f"{target}: {last}")


def _upload(target: SshTarget, ssh: SshOptions, staging: Path, remote_dir: str) -> None:
    transport = ssh.transport
    if transport == "rsync":
        shell = shlex.join(_ssh_command(target, ssh))
        # -s: the remote path reaches rsync as is, never through the remote shell.
        cmd = ["rsync", "-rt", "-s", "--chmod=Du=rwx,Dgo=rx,Fu=rw,Fgo=r", "-e", shell,
               f"{staging}/", f"{target.destination}:{remote_dir}/"]
    elif transport == "scp":
        cmd = ["scp", "-q", "-r", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20"]
        if target.port:
            cmd += ["-P", str(target.port)]
        if ssh.identity:
            cmd += ["-i", ssh.identity, "-o", "IdentitiesOnly=yes"]
        for opt in ssh.options:
            cmd += ["-o", opt]
        cmd += [str(staging), f"{target.destination}:{remote_dir}"]
    else:
        raise DeployError(f"unknown upload transport {ssh.transport!r}; expected rsync or scp")
    proc = _run(cmd, ssh.timeout, transport)
    if proc.returncode != 0:
        raise DeployError(f"{target}: {transport} upload failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")


def _run(cmd: list[str], timeout: float, what: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    try:
        if stdin is None:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, input=stdin)
        return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(errors="replace"),
                                           proc.stderr.decode(errors="replace"))
    except FileNotFoundError:
        raise DeployError(f"{what}: `{cmd[0]}` is not installed on this machine") from None
    except subprocess.TimeoutExpired:
        raise DeployError(f"{what}: no answer within {timeout:.0f} s") from None


# ---------------------------------------------------------------------------------------------
# The gateway-side command line: python -m gru_edge.edge_runtime.deploy ...


def _key_arg(path: str | None) -> bytes | None:
    if not path:
        return None
    from .signing import load_key

    return load_key(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gru_edge.edge_runtime.deploy",
                                description="Gateway side of gru-edge flashing (prints one JSON object).")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("install", help="flash a bundle from this machine into a gateway directory")
    s.add_argument("bundle")
    s.add_argument("gateway")
    s.add_argument("--keep", type=int, default=DEFAULT_KEEP)
    s.add_argument("--key-file")
    s = sub.add_parser("prepare", help="make the layout and name an upload folder")
    s.add_argument("gateway")
    s = sub.add_parser("receive", help="read a bundle tar stream on stdin, verify, self-test and activate it")
    s.add_argument("gateway")
    s.add_argument("--keep", type=int, default=DEFAULT_KEEP)
    s.add_argument("--key-file")
    s.add_argument("--source", default="")
    s = sub.add_parser("activate", help="verify, self-test and activate an upload")
    s.add_argument("gateway")
    s.add_argument("--upload", required=True)
    s.add_argument("--keep", type=int, default=DEFAULT_KEEP)
    s.add_argument("--key-file")
    s.add_argument("--source", default="")
    s = sub.add_parser("rollback", help="go back one version, or to --version")
    s.add_argument("gateway")
    s.add_argument("--version")
    s.add_argument("--key-file")
    s = sub.add_parser("list", help="versions, current and recent history")
    s.add_argument("gateway")
    s = sub.add_parser("verify", help="re-verify current and every version")
    s.add_argument("gateway")
    s.add_argument("--key-file")
    args = p.parse_args(argv)
    try:
        if args.cmd == "install":
            out = flash_local(args.bundle, args.gateway, keep=args.keep, key=_key_arg(args.key_file)).to_dict()
        elif args.cmd == "prepare":
            from .. import __version__

            gateway = ensure_gateway(args.gateway)
            token = _new_incoming(gateway, "ssh").name
            out = {"gateway": str(gateway), "upload": token, "gru_edge": __version__, "python": sys.version.split()[0]}
        elif args.cmd == "receive":
            out = receive_stream(args.gateway, sys.stdin.buffer, keep=args.keep, key=_key_arg(args.key_file),
                                 source=args.source).to_dict()
        elif args.cmd == "activate":
            out = activate_upload(args.gateway, args.upload, keep=args.keep, key=_key_arg(args.key_file),
                                  source=args.source).to_dict()
        elif args.cmd == "rollback":
            out = rollback(args.gateway, version=args.version, key=_key_arg(args.key_file)).to_dict()
        elif args.cmd == "list":
            out = _status(Path(args.gateway))
        else:
            out = verify_gateway(args.gateway, key=_key_arg(args.key_file))
    except (DeployError, BundleError, SignatureError, AlarmConfigError) as e:
        print(f"gru-edge deploy: {e}", file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
