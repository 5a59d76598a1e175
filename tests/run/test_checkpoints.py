"""fmnist/run/checkpoints.py: a save that dies half-way changes nothing, the kept model is the best or the last
sane epoch, and a NaN loss stops the run with its history kept.

Every scenario is a real training subprocess or a real Keras model.
"""

import json
import math

import pytest
from conftest import assert_clean_error, run_script

from fmnist.run.records import read_history

pytestmark = pytest.mark.slow  # every test here trains or starts processes


def test_an_interrupted_save_leaves_the_previous_model_intact(tmp_path):
    """What os.replace buys: a save that dies half-way (here: a full disk) changes nothing on disk."""
    import keras

    from fmnist.models import build_model
    from fmnist.run.checkpoints import save_atomically

    model = build_model("mlp")
    path = tmp_path / "best.keras"
    save_atomically(model, path)
    before = path.read_bytes()

    def dies_half_way(filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(before[:100])
        raise OSError(28, "No space left on device")

    model.save = dies_half_way
    with pytest.raises(OSError, match="No space"):
        save_atomically(model, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["best.keras"]
    assert keras.saving.load_model(path).count_params() == model.count_params()


@pytest.mark.parametrize("keep, kept_epoch", [("best", 1), ("last", 2)])
def test_the_checkpoint_keeps_the_best_or_the_last_epoch_and_never_a_diverged_one(tmp_path, keep, kept_epoch):
    import keras
    import numpy as np

    from fmnist.models import build_model
    from fmnist.run.checkpoints import KeptModelCheckpoint

    model = build_model("mlp")
    path = tmp_path / "kept.keras"
    checkpoint = KeptModelCheckpoint(path, keep)
    checkpoint.set_model(model)
    weights = {}
    for epoch, val_loss in enumerate([0.5, 0.7, float("nan")]):  # epoch 1 is the best, epoch 2 the last sane one
        model.layers[-1].bias.assign(np.full(10, epoch + 1.0))  # marks which epoch the file holds
        weights[epoch] = model.layers[-1].bias.numpy()
        checkpoint.on_epoch_end(epoch, {"val_loss": val_loss})
    kept = keras.saving.load_model(path).layers[-1].bias.numpy()
    assert np.array_equal(kept, weights[kept_epoch - 1])


def test_a_nan_loss_stops_with_a_clear_message_and_keeps_the_history(tmp_path):
    proc = run_script("fashion_mnist.py", "--limit", 500, "--val-fraction", 0.02, "--epochs", 3,
                      "--learning-rate", 1e9, "--out", tmp_path, "--run-name", "nan")
    assert_clean_error(proc, 1, "training diverged", "--learning-rate")
    record = json.loads((tmp_path / "history" / "nan.json").read_text())
    assert record["status"] == "diverged" and record["test"] is None and record["epochs_run"] == 1
    history = read_history(tmp_path / "history" / "nan.pkl")
    assert math.isnan(history["loss"][-1])
    assert not (tmp_path / "models" / "nan.backup").exists()
    # Nor can it be resumed: there is nothing sensible to continue.
    assert_clean_error(run_script("fashion_mnist.py", "--resume", "nan", "--out", tmp_path), 1,
                       "is diverged", "only an interrupted run")


def test_a_recipe_runs_every_epoch_it_is_given_and_still_ends_with_the_kept_epochs_weights(tmp_path):
    """The recipes set no patience, so `--model resnet20 --epochs 300` runs all 300 epochs, however long the
    validation loss stalls; with --keep best the model still ends with its best epoch's weights."""
    import numpy as np

    from fashion_mnist import DEFAULTS
    from fmnist.config import parse_config
    from fmnist.models import build_model
    from fmnist.run.checkpoints import ResumableEarlyStopping
    from fmnist.run.names import RunPaths
    from fmnist.training import make_callbacks

    config, _ = parse_config(["--model", "fast", "--epochs", "30", "--keep", "best"], DEFAULTS)
    assert config.patience is None and config.epochs == 30
    assert parse_config(["--epochs", "30"], DEFAULTS)[0].patience == DEFAULTS["patience"]  # not the recipes: 5

    paths = RunPaths("r", tmp_path / "r.keras", tmp_path / "r.pkl", tmp_path / "r.json", tmp_path / "tb")
    [stopper] = [c for c in make_callbacks(paths, config, {}) if isinstance(c, ResumableEarlyStopping)]
    model = build_model("mlp")
    stopper.set_model(model)
    stopper.on_train_begin()
    for epoch in range(config.epochs):  # the best loss in epoch 1, then 29 epochs that are worse
        model.layers[-1].bias.assign(np.full(10, epoch + 1.0))
        stopper.on_epoch_end(epoch, {"val_loss": 0.5 if epoch == 0 else 0.6 + epoch / 100})
        assert not getattr(model, "stop_training", False), f"stopped early after epoch {epoch + 1}"
    stopper.on_train_end()
    assert np.array_equal(model.layers[-1].bias.numpy(), np.full(10, 1.0))
