"""fmnist/ship/ood.py: the not-a-garment flag, calibrated on the validation split of a really trained model, flags
few test garments and most digits, blank frames and noise; a card's calibration is used when it is valid."""

import json

import numpy as np
import pytest
from conftest import run_code

from fmnist.ship import ood


@pytest.fixture(scope="module")
def calibrated(fast_run):
    from fmnist.data import load_fashion_mnist
    from fmnist.ship.runtimes import open_model

    model, _ = fast_run
    runner, data = open_model(model), load_fashion_mnist()
    return runner, data, ood.calibrate(runner, data)


@pytest.mark.slow
def test_the_flag_catches_what_is_not_a_garment_and_few_garments(calibrated):
    runner, data, calibration = calibrated
    assert json.loads(json.dumps(calibration)) == calibration  # it goes into a JSON model card as it is
    assert calibration["score"] == ood.SCORE_NAME and calibration["images"] == 6000
    assert abs(calibration["validation_flagged"] - ood.FLAG_SHARE) < 0.005
    rates = ood.rates(runner, calibration, data)
    assert 0.02 < rates["Fashion-MNIST test"]["flagged"] < 0.12  # unseen garments: about the validation share
    assert rates["sklearn digits"]["flagged"] > 0.3
    assert rates["blank"]["flagged"] > 0.99 and rates["noise"]["flagged"] > 0.99
    # What the pixel statistics add: the probability alone lets through most blank frames or noise.
    assert min(rates["blank"]["max-probability alone"], rates["noise"]["max-probability alone"]) < 0.5


@pytest.mark.slow
def test_scores_are_one_at_the_threshold_and_higher_for_stranger_inputs(calibrated):
    runner, data, calibration = calibrated
    images = data.x_test[:500]
    flagged, scores = ood.flags(calibration, images, runner.probabilities(images))
    assert flagged.dtype == bool and scores.shape == (500,) and np.array_equal(flagged, scores > 1)
    _, noise = ood.blank_and_noise(count=20)
    assert ood.flags(calibration, noise, runner.probabilities(noise))[1].min() > np.median(scores)
    assert [a.shape for a in ood.flags(calibration, images[:0], np.zeros((0, 10)))] == [(0,), (0,)]


@pytest.mark.slow
def test_calibration_for_reads_a_valid_card_and_calibrates_without_one(calibrated, tmp_path):
    runner, _, calibration = calibrated
    model = tmp_path / "m.onnx"
    card = tmp_path / "m.onnx.json"
    stored = {**calibration, "threshold": 0.123}
    card.write_text(json.dumps({"format": "onnx", "ood": stored}))
    assert ood.calibration_for(runner, model) == stored
    for broken in ({"ood": {**calibration, "threshold": "0.5"}}, {"ood": None}, {"format": "onnx"}, ["a list"]):
        card.write_text(json.dumps(broken))
        assert ood.calibration_for(runner, model)["threshold"] == calibration["threshold"]  # calibrated afresh


def test_the_flag_imports_no_tensorflow():
    proc = run_code("import sys, numpy as np\nfrom fmnist.ship import ood\n"
                    "c = {'score': ood.SCORE_NAME, 'threshold': 0.5, 'statistics': {n: [0, 1] for n in "
                    "ood.STATISTIC_NAMES}}\n"
                    "print(ood.flags(c, np.zeros((2, 28, 28), np.uint8), np.full((2, 10), 0.1))[0].tolist())\n"
                    "print('tensorflow' in sys.modules)")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == ["[True, True]", "False"]
