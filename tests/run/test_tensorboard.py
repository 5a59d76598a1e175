"""fmnist/run/tensorboard.py: a run's TensorBoard logs hold each epoch's images, the test figures and the
hyperparameters."""

import pytest
from conftest import PNG_MAGIC, read_tensors


@pytest.mark.slow
def test_tensorboard_has_epoch_images_test_figures_and_hparams(tiny_run):
    from tensorboard.plugins.hparams import metadata as hparams_metadata
    from tensorboard.plugins.hparams import plugin_data_pb2

    out, _, record = tiny_run
    logs = out / "tensorboard_logs" / "tiny"

    epoch_images, meta = read_tensors(logs / "images")
    assert set(epoch_images) == {"validation/predictions", "validation/confusion_matrix"}
    keras_steps = [step for step, _ in read_tensors(logs / "train")[0]["epoch_loss"]]
    assert len(keras_steps) == record["epochs_run"]
    for tag, events in epoch_images.items():
        assert meta[tag].plugin_data.plugin_name == "images"
        assert [step for step, _ in events] == keras_steps  # each epoch's pictures line up with its scalars
        width, height, png = events[0][1]
        assert png.startswith(PNG_MAGIC) and int(width) > 300 and int(height) > 300

    test_images, _ = read_tensors(logs / "test")
    assert set(test_images) == {"test/confusion", "test/misclassified", "test/feature-maps", "test/confused-pair"}
    assert {events[0][0] for events in test_images.values()} == {keras_steps[-1]}  # at the last epoch
    width, height, _ = test_images["test/confusion"][0][1]
    assert int(width) > int(height) > 300  # two panels side by side

    root, meta = read_tensors(logs)
    assert meta[hparams_metadata.SESSION_START_INFO_TAG].plugin_data.plugin_name == "hparams"
    content = meta[hparams_metadata.SESSION_START_INFO_TAG].plugin_data.content
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["model"].string_value == "cnn"
    assert hparams["batch_size"].number_value == record["hyperparameters"]["batch_size"]
    assert hparams["limit"].number_value == 1000
    assert float(root["test/accuracy"][0][1]) == pytest.approx(record["test"]["accuracy"])
