"""fmnist/report.py: the test report a training run prints and records, and `evaluate`, which reproduces it for a
saved model (this project's or a compatible one) without overwriting anything."""

import json

import numpy as np
import pytest
from conftest import run_script

from fmnist import CLASS_NAMES


@pytest.mark.slow
def test_a_training_run_prints_and_records_the_test_report(tiny_run):
    out, proc, record = tiny_run
    test = record["test"]
    assert [row["class"] for row in test["per_class"]] == list(CLASS_NAMES)
    assert all(row["support"] == 1000 for row in test["per_class"])
    matrix = np.array(test["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 10_000
    assert np.trace(matrix) / 10_000 == pytest.approx(test["accuracy"])
    pairs = test["most_confused"]
    assert 1 <= len(pairs) <= 5 and [p["count"] for p in pairs] == sorted((p["count"] for p in pairs), reverse=True)
    first = pairs[0]
    t, p = CLASS_NAMES.index(first["true"]), CLASS_NAMES.index(first["predicted"])
    assert first["count"] == matrix[t, p] == max(matrix[i, j] for i in range(10) for j in range(10) if i != j)
    assert f"{first['true']} → {first['predicted']}: {first['count']}" in proc.stdout
    assert "precision" in proc.stdout and "Shirt" in proc.stdout


@pytest.mark.slow
def test_evaluate_reproduces_the_report_and_never_overwrites(tiny_run, tmp_path):
    out, _, record = tiny_run
    model = out / "models" / "tiny.keras"
    first = run_script("fashion_mnist.py", "evaluate", model, "--out", tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    report = json.loads((tmp_path / "tiny-evaluation.json").read_text())
    assert report["test"]["accuracy"] == pytest.approx(record["test"]["accuracy"], abs=2e-3)
    assert report["test"]["per_class"][0]["class"] == "T-shirt/top"
    for name in ("confusion", "misclassified", "feature-maps", "confused-pair"):
        assert report["figures"][name] == str(tmp_path / f"tiny-{name}.png")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    from fmnist.report import evaluate_saved_model  # the same command again, in this process to save time

    assert evaluate_saved_model(model, tmp_path) == 0
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name in before} == before
    assert (tmp_path / "tiny-2-evaluation.json").exists() and (tmp_path / "tiny-2-confusion.png").exists()


@pytest.mark.slow
def test_evaluate_takes_a_compatible_model_from_elsewhere(tmp_path):
    import keras

    foreign = keras.Sequential([keras.Input((28, 28)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
                                keras.layers.Dense(10, activation="softmax")])
    foreign.save(tmp_path / "foreign.keras")
    from fmnist.report import evaluate_saved_model

    assert evaluate_saved_model(tmp_path / "foreign.keras", out=None) == 0  # default: next to the model
    report = json.loads((tmp_path / "foreign-evaluation.json").read_text())
    assert set(report["figures"]) == {"confusion", "misclassified", "confused-pair"}  # no convs, no feature maps
    assert 0 <= report["test"]["accuracy"] <= 1 and sum(r["support"] for r in report["test"]["per_class"]) == 10_000
