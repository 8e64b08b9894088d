#!/usr/bin/env python3
"""One entry point for a fresh clone: builds ./.venv when needed, then runs the main job or the tests.

    python3 dev.py demo [gru-edge demo options]   # generate -> train -> export -> parity -> score
    python3 dev.py test [pytest options]          # the full test suite (what CI runs)

Only the standard library is used here, because nothing else exists before the environment does.
The environment is re-installed only when pyproject.toml changes (a hash stamp inside .venv).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".gru-edge-stamp"
EXTRAS = "toolkit,test,mqtt,litert,plots"
# System programs the SSH-flash and MQTT tests start for real, and the Debian packages holding them.
TEST_PROGRAMS = {"sshd": "openssh-server", "ssh": "openssh-client", "rsync": "rsync", "mosquitto": "mosquitto"}


def _bin(name: str) -> Path:
    return VENV / ("Scripts" if os.name == "nt" else "bin") / name


def ensure_env() -> None:
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + EXTRAS.encode()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == wanted and _bin("gru-edge").exists():
        return
    if sys.version_info < (3, 11):
        sys.exit(f"gru-edge needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not _bin("python").exists():
        print(f"creating {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print(f"installing gru-edge[{EXTRAS}] into {VENV} (first run only) ...", flush=True)
    subprocess.run(
        [str(_bin("python")), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-e", f"{ROOT}[{EXTRAS}]"],
        check=True,
    )
    STAMP.write_text(wanted + "\n")


def ensure_test_programs() -> None:
    """Install the servers the SSH and MQTT tests run (Debian packages), when missing and we are root with apt.

    Otherwise say so: those tests then skip with the reason.
    """
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/local/sbin"])
    missing = sorted({pkg for prog, pkg in TEST_PROGRAMS.items() if not shutil.which(prog, path=search)})
    if not missing:
        return
    if os.name != "posix" or os.geteuid() != 0 or not shutil.which("apt-get"):
        print(f"note: {' '.join(missing)} not installed and this is not root with apt-get: "
              "the SSH and MQTT tests will skip", flush=True)
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    # Packages must not start their daemons (sshd on :22, mosquitto on :1883) as a side effect:
    # the tests start their own on free ports. policy-rc.d exit 101 = "not allowed" (Debian policy).
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        print(f"installing {' '.join(missing)} for the SSH and MQTT tests: {' '.join(install)}", flush=True)
        if subprocess.run(install, env=env).returncode != 0:
            print("apt-get install failed; refreshing the package lists (apt-get update) and retrying", flush=True)
            subprocess.run(["apt-get", "update", "-q"], env=env)
            if subprocess.run(install, env=env).returncode != 0:
                print("warning: could not install them; the SSH and MQTT tests will skip", flush=True)
    finally:
        if ours:
            policy.unlink()


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test", "env"):
        print(__doc__.strip())
        return 2
    command, rest = argv[0], argv[1:]
    ensure_env()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    if command == "env":
        return 0
    if command == "demo":
        cmd = [str(_bin("gru-edge")), "demo", *rest]
    else:
        ensure_test_programs()
        cmd = [str(_bin("python")), "-m", "pytest", *rest]
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
