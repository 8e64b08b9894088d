"""Crash safety: SIGKILL `flash` at random points, then check the gateway is still sound.

After every kill: `current` points to a version that is complete and verified (every hash, and the
golden self-test), every directory that looks like a version is complete, and the next flash
succeeds and sweeps the litter away. Most kills hit a forked flash (the same code as the command,
started in a millisecond, so the kill points spread over the whole copy/verify/rename/switch/prune
sequence); a few hit the real `gru-edge flash` process.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from gru_edge.edge_runtime import deploy
from gru_edge.edge_runtime.bundle import read_manifest, verify_files
from test_deploy_support import make_bundle

FORK_KILLS = 150  # kills that land while the flash is running (early finishers do not count)
CLI_KILLS = 8


def self_test(path: str) -> str:
    """Runs in a spawned worker: opening a bundle = hashes + golden self-test."""
    from gru_edge.edge_runtime.bundle import open_bundle

    open_bundle(path)
    return "ok"


def check_gateway(gw: Path, worker) -> deploy.Version:
    live = deploy.current_version(gw)
    assert live is not None, f"`current` is missing or dangling: {os.readlink(gw / 'current')!r}"
    for v in deploy.list_versions(gw):
        verify_files(v.path, read_manifest(v.path))  # complete: every listed file, every hash
    assert worker.submit(self_test, str(live.path)).result(timeout=30) == "ok"
    return live


def flash_in_child(bundle: Path, gw: Path) -> int:
    pid = os.fork()
    if pid == 0:  # child: flash and leave without running any of the parent's cleanup
        try:
            deploy.flash_local(bundle, gw, keep=3)
            code = 0
        except BaseException:
            code = 1
        os._exit(code)
    return pid


@pytest.mark.slow
def test_sigkill_flash_at_random_points(tmp_path):
    import onnxruntime  # noqa: F401  -- imported before forking so each child starts flashing at once

    rng = random.Random(20260105)
    gw = tmp_path / "gw"
    bundles = [make_bundle(tmp_path / f"b{i}", bias=0.05 * i) for i in range(6)]
    deploy.flash_local(bundles[0], gw, keep=3)
    # How long one flash takes here (median of 3): the kill points are spread over 0..1.1x that.
    times = []
    for b in bundles[1:4]:
        t0 = time.perf_counter()
        _, status = os.waitpid(flash_in_child(b, gw), 0)
        times.append(time.perf_counter() - t0)
        assert status == 0
    full = sorted(times)[1]

    outcomes = {"unchanged": 0, "switched": 0, "finished": 0}
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as worker:
        check_gateway(gw, worker)
        i = 0
        def enough() -> bool:
            kills = outcomes["unchanged"] + outcomes["switched"]
            return kills >= FORK_KILLS and outcomes["unchanged"] >= 10 and outcomes["switched"] >= 5

        while not enough() and i < 4 * FORK_KILLS:
            i += 1
            before = deploy.current_version(gw)
            pid = flash_in_child(bundles[i % len(bundles)], gw)
            # On a loaded machine a flash can take longer than measured: when kills keep landing before the
            # switch, aim later, so both sides of the switch are really exercised.
            # Only every other kill is aimed late: aiming all of them late lets most flashes finish first.
            late = i > FORK_KILLS // 2 and outcomes["switched"] < 5 and i % 2 == 0
            time.sleep(rng.uniform(0.7 * full, 1.3 * full) if late else rng.uniform(0, 1.1 * full))
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            killed = os.WIFSIGNALED(status)
            live = check_gateway(gw, worker)
            outcomes["finished" if not killed else "unchanged" if live == before else "switched"] += 1

        # The real command, killed somewhere between start-up and done.
        cmd = [sys.executable, "-c", "from gru_edge.cli import main; main()"]
        t0 = time.perf_counter()
        subprocess.run(cmd + ["flash", str(bundles[2]), "--to", str(gw)], check=True, capture_output=True)
        cli_full = time.perf_counter() - t0
        for i in range(CLI_KILLS):
            proc = subprocess.Popen(cmd + ["flash", str(bundles[3 + i % 3]), "--to", str(gw)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.5 * cli_full, 1.1 * cli_full))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            check_gateway(gw, worker)

        # Litter is swept by the next writer, which also succeeds.
        final = deploy.flash_local(bundles[5], gw, keep=3)
        assert check_gateway(gw, worker) == final.version
    assert os.listdir(gw / ".incoming") == [] and os.listdir(gw / ".trash") == []
    assert not [e for e in os.listdir(gw) if e.startswith(".current.tmp-")]
    assert len(deploy.list_versions(gw)) == 3
    print(f"\ncrash test: {outcomes['unchanged'] + outcomes['switched']} forked + {CLI_KILLS} CLI kills; one flash "
          f"takes {full * 1e3:.0f} ms (CLI {cli_full:.2f} s); forked outcomes {outcomes}")
    assert outcomes["unchanged"] + outcomes["switched"] >= FORK_KILLS
    # The kills must really have landed on both sides of the switch, not only before or after it.
    assert outcomes["unchanged"] >= 10 and outcomes["switched"] >= 5
