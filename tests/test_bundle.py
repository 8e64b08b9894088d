"""Manifest schema and bundle loading: nothing untrustworthy ever goes live."""

import json
import shutil

import numpy as np
import pytest

from gru_edge.edge_runtime.bundle import BundleError, open_bundle, read_manifest
from gru_edge.edge_runtime.manifest import SCHEMA_VERSION, Manifest, ManifestError
from gru_edge.edge_runtime.scorer import Scorer


@pytest.fixture
def bundle(tiny_bundle, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    return copy


def _edit_manifest(bundle, change):
    path = bundle / "manifest.json"
    d = json.loads(path.read_text())
    change(d)
    path.write_text(json.dumps(d))


def test_manifest_round_trips(tiny_bundle):
    m = read_manifest(tiny_bundle)
    again = Manifest.from_json(m.to_json())
    assert again == m
    assert m.schema_version == SCHEMA_VERSION
    assert m.window_model.format == "onnx" and m.window_model.input_shape[1:] == [m.window, len(m.features)]
    assert len(m.golden.probes) == 2 and m.parity["fp32"]["max_abs_diff"] <= 1e-5


def test_newer_schema_is_refused_with_a_clear_message(bundle):
    _edit_manifest(bundle, lambda d: d.update(schema_version=SCHEMA_VERSION + 1))
    with pytest.raises(BundleError, match="newer than this runtime"):
        open_bundle(bundle)


@pytest.mark.parametrize("change,message", [
    (lambda d: d.pop("window"), "lacks keys"),
    (lambda d: d.update(window=0), "window must be a positive integer"),
    (lambda d: d.update(surprise=1), "unknown manifest keys"),
    (lambda d: d["score"].update(kind="vibes"), "score.kind"),
    (lambda d: d["files"][0].update(path="../../etc/passwd"), "outside the bundle"),
    (lambda d: d["golden"]["probes"][0]["expected_scores"].pop(), "expected scores"),
    (lambda d: d["scaler"].update(mean=[0.0], scale=[1.0]), "scaler has 1 features but features lists"),
])
def test_malformed_manifest_is_refused(bundle, change, message):
    _edit_manifest(bundle, change)
    with pytest.raises(BundleError, match=message):
        open_bundle(bundle)


def test_invalid_json_names_line_and_column(bundle):
    (bundle / "manifest.json").write_text('{"schema_version": 1,\n  "name": }')
    with pytest.raises(BundleError, match=r"line 2, column 11"):
        open_bundle(bundle)


def test_tampered_model_is_refused(bundle):
    model = bundle / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256 .* does not match"):
        open_bundle(bundle)


def test_truncated_model_is_refused(bundle):
    model = bundle / "model.onnx"
    model.write_bytes(model.read_bytes()[:1000])
    with pytest.raises(BundleError, match="truncated or replaced"):
        open_bundle(bundle)


def test_missing_model_is_refused(bundle):
    (bundle / "model.onnx").unlink()
    with pytest.raises(BundleError, match="missing"):
        open_bundle(bundle)


def test_tampered_scaler_fails_the_golden_self_test(bundle):
    # The manifest itself is not hashed (it holds the hashes); the golden probes catch a changed scaler.
    _edit_manifest(bundle, lambda d: d["scaler"].update(mean=[v + 1.0 for v in d["scaler"]["mean"]]))
    with pytest.raises(BundleError, match="golden self-test failed"):
        open_bundle(bundle)


def test_consistently_regenerated_model_with_wrong_golden_is_refused(bundle):
    _edit_manifest(bundle, lambda d: d["golden"]["probes"][1].update(
        expected_scores=[s + 0.01 for s in d["golden"]["probes"][1]["expected_scores"]]))
    with pytest.raises(BundleError, match="refusing to go live"):
        Scorer(bundle)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="not a bundle directory"):
        open_bundle(tmp_path / "nope")
    with pytest.raises(BundleError, match="manifest.json: missing"):
        open_bundle(tmp_path)


def test_upgrade_rejects_non_versions():
    with pytest.raises(ManifestError, match="schema_version"):
        Manifest.from_dict({"name": "x"})
    with pytest.raises(ManifestError, match="JSON object"):
        Manifest.from_dict([1, 2])
