"""Bundle signatures: HMAC-SHA256 over the exact bytes of ``manifest.json``.

The manifest records the size and sha256 of every other file of the bundle, so authenticating its
bytes authenticates the whole bundle once the file hashes are checked (``bundle.verify_files``).
The signature lives beside it as ``signature.json``; it is not listed in the manifest (it cannot
be: it is computed over it).

HMAC is symmetric: the gateway holds the same key as the machine that signs. That protects
against bundles altered in transit or on the card, and against bundles built by anyone without
the key -- not against someone who can read the gateway's key file.

A key file holds the key as its content; surrounding whitespace (a trailing newline) is ignored.
Make one with ``python3 -c "import secrets; print(secrets.token_hex(32))" > gru-edge.key``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .fsutil import write_bytes_atomic
from .manifest import MANIFEST_NAME

SIGNATURE_NAME = "signature.json"
ALGORITHM = "hmac-sha256"
FORMAT = "gru-edge-signature"
MIN_KEY_BYTES = 16  # 128 bits: below that an HMAC key can be guessed


class SignatureError(RuntimeError):
    """The bundle is unsigned, wrongly signed, or the key is unusable."""


@dataclass(frozen=True)
class Signature:
    algorithm: str
    key_id: str  # identifies the key without revealing it, for error messages
    manifest_sha256: str
    signature: str  # hex HMAC-SHA256 of manifest.json's bytes
    signed_at: str = ""

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "algorithm": self.algorithm, "key_id": self.key_id,
                           "signed_file": MANIFEST_NAME, "manifest_sha256": self.manifest_sha256,
                           "signature": self.signature, "signed_at": self.signed_at}, indent=1) + "\n"


def load_key(path: str | Path) -> bytes:
    path = Path(path)
    try:
        key = path.read_bytes().strip()
    except FileNotFoundError:
        raise SignatureError(
            f"{path}: key file not found; create one with "
            "python3 -c \"import secrets; print(secrets.token_hex(32))\" > KEYFILE"
        ) from None
    except OSError as e:
        raise SignatureError(f"{path}: cannot read the key file: {e.strerror or e}") from None
    if len(key) < MIN_KEY_BYTES:
        raise SignatureError(f"{path}: key is {len(key)} bytes, at least {MIN_KEY_BYTES} are required")
    return key


def key_id(key: bytes) -> str:
    # A hash of the key under a fixed label: stable, short, and useless for recovering the key.
    return hashlib.sha256(b"gru-edge key id\0" + key).hexdigest()[:16]


def compute(manifest_bytes: bytes, key: bytes) -> str:
    return hmac.new(key, manifest_bytes, hashlib.sha256).hexdigest()


def sign_bundle(bundle_dir: str | Path, key: bytes) -> Signature:
    """Write ``signature.json`` for a bundle whose files match its manifest (refuses a broken one)."""
    from .bundle import BundleError, read_manifest, verify_files

    bundle_dir = Path(bundle_dir)
    try:
        manifest = read_manifest(bundle_dir)
        verify_files(bundle_dir, manifest)
    except BundleError as e:
        raise SignatureError(f"refusing to sign a bundle that does not verify: {e}") from e
    data = (bundle_dir / MANIFEST_NAME).read_bytes()
    sig = Signature(
        algorithm=ALGORITHM,
        key_id=key_id(key),
        manifest_sha256=hashlib.sha256(data).hexdigest(),
        signature=compute(data, key),
        signed_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    write_bytes_atomic(bundle_dir / SIGNATURE_NAME, sig.to_json().encode())
    return sig


def read_signature(bundle_dir: str | Path) -> Signature:
    path = Path(bundle_dir) / SIGNATURE_NAME
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SignatureError(
            f"{bundle_dir}: bundle is unsigned (no {SIGNATURE_NAME}) but a key was given, so only signed "
            "bundles are accepted; sign it with `gru-edge sign BUNDLE_DIR --key-file KEY`"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SignatureError(f"{path}: unreadable signature: {e}") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise SignatureError(f"{path}: not a gru-edge signature (format {d.get('format') if isinstance(d, dict) else None!r})")
    if d.get("algorithm") != ALGORITHM:
        raise SignatureError(f"{path}: algorithm {d.get('algorithm')!r} is not supported (expected {ALGORITHM!r})")
    fields = {}
    for k in ("key_id", "manifest_sha256", "signature"):
        if not isinstance(d.get(k), str):
            raise SignatureError(f"{path}: field {k!r} is missing or not a string")
        fields[k] = d[k]
    return Signature(algorithm=ALGORITHM, signed_at=str(d.get("signed_at", "")), **fields)


def verify_signature(bundle_dir: str | Path, key: bytes, manifest_bytes: bytes | None = None) -> Signature:
    """Raise ``SignatureError`` unless ``signature.json`` is a valid HMAC of the manifest under ``key``.

    Pass ``manifest_bytes`` when the caller has already read the manifest, so the bytes checked are
    the bytes used.
    """
    sig = read_signature(bundle_dir)
    if manifest_bytes is None:
        try:
            manifest_bytes = (Path(bundle_dir) / MANIFEST_NAME).read_bytes()
        except OSError as e:
            raise SignatureError(f"{bundle_dir}: cannot read {MANIFEST_NAME}: {e.strerror or e}") from None
    expected = compute(manifest_bytes, key)
    if hmac.compare_digest(expected, sig.signature.lower()):
        return sig
    if sig.key_id != key_id(key):
        raise SignatureError(
            f"{bundle_dir}: wrong signature: the bundle was signed with key {sig.key_id}, this key is "
            f"{key_id(key)}; refusing it"
        )
    if hashlib.sha256(manifest_bytes).hexdigest() != sig.manifest_sha256:
        raise SignatureError(f"{bundle_dir}: {MANIFEST_NAME} was modified after it was signed; refusing it")
    raise SignatureError(f"{bundle_dir}: signature does not match {MANIFEST_NAME} under this key; refusing it")
