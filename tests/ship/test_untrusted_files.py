"""Files from elsewhere as untrusted input: a run never writes, locks or deletes through a symlink it did not
make, and a model file of the wrong shape is refused instead of being labelled with Fashion-MNIST's classes."""

import json

import pytest
from conftest import assert_clean_error, run_script

from fmnist.errors import UserError


def fake_run(out, name):
    """The files of an interrupted run, as --resume finds them."""
    for folder in ("models", "history", "tensorboard_logs"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    (out / "history" / f"{name}.json").write_text(json.dumps({"status": "interrupted", "hyperparameters": {}}))
    (out / "tensorboard_logs" / name).mkdir()


def test_a_lock_file_that_is_a_symlink_is_refused_and_its_target_left_alone(tmp_path):
    from fmnist.run.names import lock_run, reopen_run

    out, victim = tmp_path / "out", tmp_path / "victim.txt"
    victim.write_text("the user's own file\n")
    fake_run(out, "R")
    (out / "tensorboard_logs" / "R" / ".lock").symlink_to(victim)
    with pytest.raises(UserError, match="symbolic link"):
        lock_run(reopen_run(out, "R"))
    assert victim.read_text() == "the user's own file\n"


def test_a_name_whose_backup_exists_is_taken_and_a_linked_backup_is_never_written_through(tmp_path):
    from fmnist.run.names import lock_run, reserve_run

    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "epoch-0001.weights.h5").write_bytes(b"a user's file")
    (out / "models").mkdir(parents=True)
    (out / "models" / "T.backup").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(UserError, match="already exists"):
        reserve_run(out, "T", None)  # a name the user chose: refused
    assert reserve_run(out, None, "T").name == "T-2"  # a generated name: the next one
    paths = reserve_run(out, None, "U")
    paths.backup.symlink_to(elsewhere, target_is_directory=True)  # appears after the name was claimed
    from fmnist.run import names

    names._held_locks.clear()  # noqa: SLF001 - as a second process would find it
    with pytest.raises(UserError, match="symbolic link"):
        lock_run(paths)
    assert (elsewhere / "epoch-0001.weights.h5").read_bytes() == b"a user's file"


@pytest.mark.slow
@pytest.mark.parametrize("classes", [5, 20])
@pytest.mark.parametrize("suffix", [".onnx", ".tflite"])
def test_a_model_file_of_the_wrong_shape_is_refused_in_one_line(tmp_path, classes, suffix):
    import keras
    import numpy as np
    from PIL import Image

    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(classes, activation="softmax")])
    model(np.zeros((1, 28, 28, 1), "float32"))  # Keras's exporters need a model that has been called
    path = tmp_path / f"other{suffix}"
    model.export(str(path), format="onnx" if suffix == ".onnx" else "litert", verbose=False)
    Image.new("L", (28, 28), 255).save(tmp_path / "white.png")
    proc = run_script("fashion_mnist.py", "predict", path, tmp_path / "white.png")
    assert_clean_error(proc, 1, f"outputs shape (None, {classes}); expected (None, 10)")


EVIL = '''
import sys
import tensorflow as tf

class Evil(tf.Module):
    def __init__(self, mode):
        super().__init__()
        self.w = tf.Variable(tf.zeros((784, 10)))
        self.mode = mode

    @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32)])
    def serve(self, x):
        if self.mode == "read":
            tf.io.write_file(sys.argv[2], tf.io.read_file("/etc/hostname"))
        else:
            tf.raw_ops.SaveV2(prefix=sys.argv[2], tensor_names=["w"], shape_and_slices=[""], tensors=[self.w])
        return {"output_0": tf.nn.softmax(tf.reshape(x, (-1, 784)) @ self.w)}

module = Evil(sys.argv[3])
tf.saved_model.save(module, sys.argv[1], signatures={"serving_default": module.serve})
'''


@pytest.mark.slow
@pytest.mark.parametrize("mode, op", [("read", "ReadFile"), ("save", "SaveV2")])
def test_a_savedmodel_that_touches_files_is_refused_before_it_runs(tmp_path, mode, op):
    from conftest import run_code
    from PIL import Image

    model, loot = tmp_path / "evil.savedmodel", tmp_path / "stolen"
    made = run_code(EVIL, model, loot, mode)
    assert made.returncode == 0, made.stderr[-2000:]
    Image.new("L", (28, 28), 255).save(tmp_path / "white.png")
    proc = run_script("fashion_mnist.py", "predict", model, tmp_path / "white.png")
    assert_clean_error(proc, 1, "refusing to run a SavedModel", repr(op))
    assert not any(p.name.startswith("stolen") for p in tmp_path.iterdir())  # nothing read or written


def test_a_huge_number_or_a_long_run_name_is_a_usage_error_naming_the_flag():
    proc = run_script("fashion_mnist.py", "--epochs", "9" * 400)
    assert_clean_error(proc, 2, "--epochs", "far out of range")
    proc = run_script("fashion_mnist.py", "--run-name", "a" * 300)
    assert_clean_error(proc, 2, "--run-name", "300 characters long")


def test_replacing_a_file_keeps_the_mode_its_owner_gave_it(tmp_path):
    import os

    from fmnist.run.files import write_file

    private = tmp_path / "history.pkl"
    private.write_bytes(b"old")
    os.chmod(private, 0o600)
    write_file(private, b"new")
    assert (private.read_bytes(), private.stat().st_mode & 0o777) == (b"new", 0o600)
    with pytest.raises(UserError, match="already exists"):
        write_file(private, b"newer", new=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.pkl"]  # and no temporary file left


@pytest.mark.slow
def test_a_keras_file_that_is_not_one_is_refused_before_keras_reads_it(tmp_path):
    import zipfile

    from PIL import Image

    Image.new("L", (28, 28), 255).save(tmp_path / "white.png")
    (tmp_path / "truncated.keras").write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with zipfile.ZipFile(tmp_path / "bomb.keras", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", "{" + " " * 50_000_000 + "}")  # 50 MB that compress to 50 KB
    (tmp_path / "upper.KERAS").write_bytes((tmp_path / "bomb.keras").read_bytes())
    for name, message in [("truncated.keras", "not a loadable .keras model (a .keras model is a zip"),
                          ("bomb.keras", "config.json declares"), ("upper.KERAS", "ends in .keras (lower case)")]:
        proc = run_script("fashion_mnist.py", "predict", tmp_path / name, tmp_path / "white.png")
        assert_clean_error(proc, 1, message)
