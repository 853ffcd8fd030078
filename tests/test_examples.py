"""The bundled time-series and anomaly examples train and deploy, host and (simulated) device agreeing."""

from __future__ import annotations

import pytest

from tinyflow.examples import train_anomaly, train_signals
from tinyflow.model.optimization import OptimizeOptions
from tinyflow.pipeline import DeployOptions, deploy


@pytest.mark.slow
def test_signals_example_classifies_time_series(tmp_path):
    model, data = train_signals(tmp_path / "ex", epochs=8)
    r = deploy(model, DeployOptions(data=str(data), out=str(tmp_path / "out"))).report
    assert r["accuracy"]["float"] >= 0.9 and abs(r["accuracy"]["float"] - r["accuracy"]["int8"]) <= 0.03
    assert r["device"]["bit_exact_share"] == 1.0 and r["device"]["accuracy"] == r["accuracy"]["int8"]
    assert "CONV_2D" in r["model"]["ops"]  # Conv1D becomes CONV_2D in TFLite


@pytest.mark.slow
def test_anomaly_example_finds_faults_by_reconstruction_error(tmp_path):
    model, data = train_anomaly(tmp_path / "ex", epochs=25)
    r = deploy(model, DeployOptions(data=str(data), out=str(tmp_path / "out"),
                                    optimize=OptimizeOptions(prune=0.5, epochs=5))).report
    acc, dev = r["accuracy"], r["device"]
    assert acc["task"] == "regression" and acc["float_auc"] >= 0.9 and acc["int8_auc"] >= 0.9
    assert dev["auc"] == acc["int8_auc"] and abs(dev["mse"] - acc["int8_mse"]) < 1e-5
    assert r["optimize"]["sparsity"]["overall"] >= 0.5
