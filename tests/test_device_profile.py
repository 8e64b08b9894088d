import importlib.resources
import dataclasses

import pytest

from gru_edge.edge_runtime.device_profile import (
    DeviceProfile,
    ProfileError,
    list_profiles,
    load_profile,
    profile_names,
)

SHIPPED = {"rpi4", "rpi-zero2w", "x86-gateway", "jetson-orin-nano-cpu"}

GOOD = """\
name = "t"
description = "test"
arch = "aarch64"
cpu = "x"
cores = 4
ram_mb = 512
model_storage_budget_kb = 256
format = "onnx"
quantization = "int8"
threads = 2
latency_budget_ms = 100
speed_factor = 8.0

[parity]
max_abs_diff = 0.05
min_decision_agreement = 0.98
max_f1_drop = 0.03
"""


def test_every_shipped_profile_loads():
    profiles = list_profiles()
    assert SHIPPED <= {p.name for p in profiles}
    for p in profiles:
        assert isinstance(p, DeviceProfile)
        assert 1 <= p.threads <= p.cores
        assert p.format == "onnx" and p.path.endswith(f"{p.name}.toml")
        assert 0 < p.parity.min_decision_agreement <= 1


def test_zero2w_is_tiny_and_int8():
    p = load_profile("rpi-zero2w")
    assert p.quantization == "int8" and p.model_storage_budget_kb <= 256 and p.ram_mb == 512
    assert p.speed_factor > load_profile("rpi4").speed_factor


def test_load_by_path_and_float_coercion(tmp_path):
    f = tmp_path / "t.toml"
    f.write_text(GOOD + "\n[measured]\nlatency_ms_per_window = 3\nruntime = 'onnxruntime 1.20'\n")
    p = load_profile(f)
    assert p.latency_budget_ms == 100.0 and isinstance(p.latency_budget_ms, float)
    assert p.measured.latency_ms_per_window == 3.0 and p.measured.runtime == "onnxruntime 1.20"
    assert p.estimated_latency_ms(1.0) == 3.0
    assert dataclasses.replace(p, measured=None).estimated_latency_ms(1.0) == 8.0
    assert load_profile(str(f)) == p


def test_unknown_name_lists_known():
    with pytest.raises(ProfileError) as e:
        load_profile("rpi5")
    assert "rpi5" in str(e.value) and all(n in str(e.value) for n in profile_names())


@pytest.mark.parametrize(
    "old, new, needles",
    [
        ('cores = 4', 'cores = "four"', ["'cores'", "integer", "'four'"]),
        ('cores = 4', 'cores = true', ["'cores'", "True"]),
        ('threads = 2', 'threads = 8', ["'threads'", "cores=4", "8"]),
        ('quantization = "int8"', 'quantization = "int4"', ["'quantization'", "'int4'", "fp16"]),
        ('speed_factor = 8.0', 'speed_factor = 8.0\nspeedfactor = 2', ["unknown key 'speedfactor'", "allowed"]),
        ('max_f1_drop = 0.03', 'max_f1_drop = 0.03\nmax_diff = 1', ["unknown key 'parity.max_diff'"]),
        ('ram_mb = 512\n', '', ["missing key 'ram_mb'"]),
        ('min_decision_agreement = 0.98\n', '', ["missing key 'parity.min_decision_agreement'"]),
        ('min_decision_agreement = 0.98', 'min_decision_agreement = 1.5', ["parity.min_decision_agreement", "1.5"]),
        ('[parity]', '[parityx]', ["unknown key 'parityx'"]),
        ('cores = 4', 'cores = ', ["not valid TOML"]),
    ],
)
def test_broken_profile_names_file_and_key(tmp_path, old, new, needles):
    assert old in GOOD
    f = tmp_path / "broken.toml"
    f.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(ProfileError) as e:
        load_profile(f)
    msg = str(e.value)
    assert str(f) in msg
    for n in needles:
        assert n in msg


def test_missing_parity_table(tmp_path):
    f = tmp_path / "p.toml"
    f.write_text(GOOD.split("[parity]")[0])
    with pytest.raises(ProfileError, match=r"missing table \[parity\]"):
        load_profile(f)


def test_missing_path():
    with pytest.raises(ProfileError, match="no such profile file"):
        load_profile("/nonexistent/x.toml")


def test_write_measured_replaces_only_the_measured_table(tmp_path):
    from gru_edge.edge_runtime.device_profile import load_profile, write_measured

    src = importlib.resources.files("gru_edge.devices") / "rpi4.toml"
    path = tmp_path / "rpi4.toml"
    path.write_text(src.read_text() + "\n[measured]\nlatency_ms_per_window = 99.0\n")
    before = load_profile(path)
    profile = write_measured(path, 1.25, runtime="onnxruntime 1.31.1, aarch64", notes="test")
    assert profile.measured.latency_ms_per_window == 1.25
    assert load_profile(path).measured.latency_ms_per_window == 1.25
    assert path.read_text().splitlines().count("[measured]") == 1
    assert load_profile(path).parity == before.parity and "# Raspberry Pi 4" in path.read_text()
    assert profile.estimated_latency_ms(0.3) == 1.25  # the device's own figure beats the speed-factor estimate


def test_edge_score_bench_writes_the_profile(tiny_bundle, tmp_path):
    from gru_edge.edge_runtime.bench import main
    from gru_edge.edge_runtime.device_profile import load_profile

    src = importlib.resources.files("gru_edge.devices") / "x86-gateway.toml"
    path = tmp_path / "gw.toml"
    path.write_text(src.read_text())
    assert load_profile(path).measured is None
    assert main([str(tiny_bundle), "--budget", "0.05", "--write-profile", str(path)]) == 0
    measured = load_profile(path).measured
    assert measured is not None and 0 < measured.latency_ms_per_window < 100
    assert "onnxruntime" in measured.runtime
