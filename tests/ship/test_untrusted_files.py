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


def small_model_file(path, classes=10):
    """A small conv net written by Keras's own exporter (.onnx or .tflite, from the suffix), as `export` writes."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Conv2D(8, 3, activation="relu"), keras.layers.MaxPooling2D(),
                              keras.layers.Flatten(), keras.layers.Dense(classes, activation="softmax")])
    model(np.zeros((1, 28, 28, 1), "float32"))  # Keras's exporters need a model that has been called
    model.export(str(path), format="onnx" if path.suffix == ".onnx" else "litert", verbose=False)
    return path


def memory_bomb(path, gib):
    """An ONNX file of 30 KB with the right input and output whose graph asks for `gib` GiB when it runs."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    constants = {"w": np.zeros((784, 10), "float32"), "flat": np.array([-1, 784]), "elements": np.array([
        int(gib * 2**30 / 4)]), "start": np.array([0]), "end": np.array([1]), "zero": np.array(0, "float32")}
    nodes = [helper.make_node("Reshape", ["x", "flat"], ["pixels"]), helper.make_node("MatMul", ["pixels", "w"], ["l"]),
             helper.make_node("Shape", ["x"], ["shape"]), helper.make_node("Slice", ["shape", "start", "end"], ["n"]),
             helper.make_node("Mul", ["n", "elements"], ["size"]),  # from the input, so nothing folds it away
             helper.make_node("ConstantOfShape", ["size"], ["huge"]),
             helper.make_node("ReduceSum", ["huge"], ["sum"], keepdims=0),
             helper.make_node("Mul", ["sum", "zero"], ["z"]),
             helper.make_node("Add", ["l", "z"], ["logits"]), helper.make_node("Softmax", ["logits"], ["y"], axis=1)]
    graph = helper.make_graph(nodes, "bomb", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 28, 28, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
                              [numpy_helper.from_array(v, k) for k, v in constants.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.mark.slow
def test_a_model_file_that_floods_its_runtime_with_memory_is_refused_in_one_line(tmp_path):
    from PIL import Image

    Image.new("L", (28, 28), 255).save(tmp_path / "white.png")
    proc = run_script("fashion_mnist.py", "predict", memory_bomb(tmp_path / "bomb.onnx", 6), tmp_path / "white.png")
    assert_clean_error(proc, 1, "bomb.onnx", "more than 4 GiB of memory")


FUZZ = '''
import sys
from pathlib import Path

import numpy as np

from fmnist.errors import UserError
from fmnist.ship.runtimes import open_model

for path in sorted(Path(sys.argv[1]).iterdir()):
    try:
        p = open_model(path).probabilities(np.zeros((3, 28, 28), np.uint8))
        print(f"ok {path.name} {p.shape}", flush=True)
    except UserError as e:
        print(f"refused {path.name}: {e}", flush=True)
'''


@pytest.mark.slow
def test_mutants_of_real_exported_files_are_refused_or_run_and_never_end_the_process(tmp_path):
    """Each mutant has one byte changed, most near the start (the flatbuffer's and protobuf's tables): the
    process that opens them all must live to report every one, as a result or a one-line refusal."""
    import random

    from conftest import run_code

    mutants, rng = tmp_path / "mutants", random.Random(33)
    mutants.mkdir()
    for suffix in (".tflite", ".onnx"):
        good = small_model_file(tmp_path / f"good{suffix}").read_bytes()
        for i in range(24):
            data = bytearray(good)
            data[rng.randrange(512 if i % 3 else len(data))] = rng.randrange(256)
            (mutants / f"{i:02d}{suffix}").write_bytes(data)
    memory_bomb(mutants / "bomb.onnx", 6)
    proc = run_code(FUZZ, mutants)
    assert proc.returncode == 0, proc.stderr[-3000:]  # a crash (exit 139) or an OOM kill ends here
    lines = proc.stdout.splitlines()
    assert len(lines) == 49, proc.stdout
    assert all(line.startswith(("ok ", "refused ")) and "\n" not in line for line in lines)
    assert any(line.startswith("refused bomb.onnx") and "4 GiB" in line for line in lines)
    assert sum(line.startswith("refused") for line in lines) >= 5  # the changes do reach what the runtimes check


@pytest.mark.slow
def test_a_keras_config_declaring_too_many_parameters_is_refused_before_it_is_built_here(tiny_run, tmp_path):
    import zipfile

    from PIL import Image

    out, _, _ = tiny_run
    with zipfile.ZipFile(out / "models" / "tiny.keras") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    [last] = [layer for layer in config["config"]["layers"] if layer["config"].get("name") == "predictions"]
    last["config"]["units"] = 150_000  # 400 x 150,000 weights: 60 M parameters from a file of a few MB
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "wide.keras", "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    Image.new("L", (28, 28), 255).save(tmp_path / "white.png")
    proc = run_script("fashion_mnist.py", "predict", tmp_path / "wide.keras", tmp_path / "white.png")
    assert_clean_error(proc, 1, "wide.keras: its config declares 63,", "over the 50,000,000")
