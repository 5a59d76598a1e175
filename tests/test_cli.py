import json
import os
import pickle
import subprocess
import sys

import pytest
from conftest import ROOT, assert_clean_error, run_script


@pytest.mark.slow
def test_help_lists_every_flag_without_importing_tensorflow():
    import subprocess
    import sys

    code = ("import runpy, sys; sys.argv = ['fashion_mnist.py', '--help']\n"
            "try: runpy.run_path('fashion_mnist.py', run_name='__main__')\n"
            "except SystemExit: pass\n"
            "print('TF_LOADED' if 'tensorflow' in sys.modules else 'TF_NOT_LOADED')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("TF_NOT_LOADED")
    for flag in ("--model", "--epochs", "--batch-size", "--learning-rate", "--limit", "--seed", "--data-dir",
                 "--out", "--run-name"):
        assert flag in proc.stdout
    assert "(default: 20;" in proc.stdout and "(default: 0.001;" in proc.stdout  # and the fast recipe's values


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "--epochs"),
        (["--epochs", "many"], "--epochs"),
        (["--batch-size", "-5"], "--batch-size"),
        (["--learning-rate", "0"], "--learning-rate"),
        (["--learning-rate", "nan"], "--learning-rate"),
        (["--val-fraction", "1.5"], "--val-fraction"),
        (["--model", "vgg"], "--model"),
        (["--run-name", "../escape"], "--run-name"),
        (["--limit", "abc"], "--limit"),
        (["--limit", "5"], "--limit"),
        (["--seed", "-1"], "--seed"),
        (["--seed", "4294967296"], "--seed"),
        (["--worker-timeout", "1e12"], "--worker-timeout"),
        (["--patience", "1.5"], "--patience"),
        (["--learning-rate", "inf"], "--learning-rate"),
        (["--precision", "float8"], "--precision"),
        (["--resume", "a/b"], "--resume"),
        (["--no-such-flag"], "unrecognized"),
    ],
)
def test_bad_flags_exit_2_with_a_clear_message(args, message):
    assert_clean_error(run_script("fashion_mnist.py", *args), 2, message)


def test_a_setting_declared_once_reaches_help_the_record_the_sweep_and_resume():
    """Adding a hyperparameter takes a line at the top of fashion_mnist.py and one Setting: nothing else."""
    from fashion_mnist import DEFAULTS
    from fmnist.config import SETTINGS, Number, Setting, build_parser, check_settings, parse_config

    settings = SETTINGS + (Setting("label_smoothing", "share of probability spread over the other classes",
                                   Number(float, 0, 1), hyperparameter=True),)
    defaults = {**DEFAULTS, "label_smoothing": 0.0}
    assert "--label-smoothing" in build_parser(defaults, settings=settings).format_help()
    config, grid = parse_config(["--label-smoothing", "0.1", "--sweep", "label_smoothing=0,0.2"], defaults,
                                settings=settings)
    assert config.label_smoothing == 0.1
    assert config.hyperparameters()["label_smoothing"] == 0.1  # what the run record keeps
    assert grid == [{"label_smoothing": 0.0}, {"label_smoothing": 0.2}]
    assert check_settings(config, {"label_smoothing": 0.3}).label_smoothing == 0.3  # what --resume reads back
    with pytest.raises(ValueError, match="label_smoothing"):
        check_settings(config, {"label_smoothing": 2.0})
    with pytest.raises(SystemExit):  # argparse's exit 2
        parse_config(["--label-smoothing", "2"], defaults, settings=settings)


def test_the_top_of_file_block_and_the_declared_hyperparameters_must_agree():
    from fashion_mnist import HYPERPARAMETERS
    from fmnist.config import hyperparameter_defaults

    assert hyperparameter_defaults(HYPERPARAMETERS)["batch_size"] == 64
    with pytest.raises(RuntimeError, match="label_smoothing"):
        hyperparameter_defaults({**HYPERPARAMETERS, "LABEL_SMOOTHING": 0.1})
    with pytest.raises(RuntimeError, match="epochs"):
        hyperparameter_defaults({k: v for k, v in HYPERPARAMETERS.items() if k != "EPOCHS"})


def test_every_hyperparameter_can_be_swept():
    """The sweep's list comes from the same declaration as the flags (tta was once a flag but not sweepable)."""
    from fashion_mnist import DEFAULTS
    from fmnist.config import parse_config

    for name, value in DEFAULTS.items():
        text = "100" if value is None else str(value)
        _, grid = parse_config(["--sweep", f"{name}={text}"], DEFAULTS)
        assert list(grid[0]) == [name]


@pytest.mark.slow
def test_end_to_end_run_writes_every_output(tiny_run):
    import keras
    import numpy as np

    out, proc, record = tiny_run
    assert "Test accuracy" in proc.stdout and "top-5" in proc.stdout
    assert "shipped copy" in proc.stdout  # the data source is printed

    history = pickle.loads((out / "history" / "tiny.pkl").read_bytes())
    assert set(history) >= {"loss", "accuracy", "top5_accuracy", "val_loss", "val_accuracy"}
    assert all(isinstance(v, list) and len(v) == 1 for v in history.values())

    for key in ("run", "model", "hyperparameters", "epochs_run", "train_seconds", "test", "files"):
        assert key in record
    assert record["run"] == "tiny" and record["model"] == "cnn" and record["epochs_run"] == 1
    assert record["hyperparameters"]["limit"] == 1000
    assert 0.1 < record["test"]["accuracy"] <= record["test"]["top5_accuracy"] <= 1

    assert list((out / "tensorboard_logs" / "tiny").rglob("events.out.tfevents.*"))
    model = keras.saving.load_model(out / "models" / "tiny.keras")
    assert model.predict(np.zeros((2, 28, 28, 1), "float32"), verbose=0).shape == (2, 10)


@pytest.mark.slow
def test_a_run_name_is_never_reused_and_nothing_is_overwritten(tiny_run):
    out, _, _ = tiny_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    proc = run_script("fashion_mnist.py", "--limit", 1000, "--epochs", 1, "--out", out, "--run-name", "tiny")
    assert_clean_error(proc, 1, "already exists")
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


@pytest.mark.slow
@pytest.mark.parametrize("where", ["file", "file/below"])  # tests run as root: only a file in the way stops writes
def test_an_unwritable_out_fails_before_training(tmp_path, where):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("I am a file")
    proc = run_script("fashion_mnist.py", "--limit", 1000, "--out", tmp_path / where)
    assert_clean_error(proc, 1, "cannot write to --out")
    assert "Epoch 1" not in proc.stdout
    assert not_a_folder.read_text() == "I am a file"


@pytest.mark.slow
def test_missing_data_names_the_folder(tmp_path):
    proc = run_script("fashion_mnist.py", "--data-dir", tmp_path / "nowhere", "--out", tmp_path)
    assert_clean_error(proc, 1, "nowhere", "no such folder")


@pytest.mark.slow
def test_run_record_is_valid_json_with_the_history(tiny_run):
    out, _, record = tiny_run
    assert record["history"] == pickle.loads((out / "history" / "tiny.pkl").read_bytes())
    json.dumps(record, allow_nan=False)  # strict JSON: no NaN or Infinity


# ---------------------------------------------------------------------------------------------------------------
# Bad data through the command line: refused before TensorFlow loads, so each costs well under a second
# ---------------------------------------------------------------------------------------------------------------


def _idx(array, magic=None, dims=None):
    import numpy as np

    array = np.asarray(array, dtype=np.uint8)
    magic = magic if magic is not None else 0x0800 + array.ndim
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (dims or array.shape))
    return header + array.tobytes()


def _real_labels():
    import gzip

    import numpy as np

    raw = gzip.decompress((ROOT / "data" / "fashion" / "t10k-labels-idx1-ubyte.gz").read_bytes())
    return np.frombuffer(raw, np.uint8, offset=8).copy()


def _broken_files():
    """file name -> (what to write instead of it (None: no file), the message expected)."""
    import gzip

    import numpy as np

    labels = _real_labels()
    changed = labels.copy()
    changed[0] = (changed[0] + 1) % 10
    outside = labels.copy()
    outside[5] = 12
    real_gz = gzip.compress(_idx(labels))
    return {
        "missing file": ("t10k-labels-idx1-ubyte.gz", None, "file not found"),
        "truncated gzip": ("t10k-labels-idx1-ubyte.gz", real_gz[: len(real_gz) // 2], "truncated gzip"),
        "not gzip": ("t10k-labels-idx1-ubyte.gz", b"P3 28 28 255\n0 0 0", "not a gzip file"),
        "wrong magic": ("t10k-labels-idx1-ubyte.gz", gzip.compress(_idx(labels, magic=0x0901)), "bad magic number"),
        "images for labels": ("t10k-labels-idx1-ubyte.gz",
                              gzip.compress(_idx(np.zeros((10_000, 28, 28)))), "magic number 2051 but"),
        "wrong dimensions": ("t10k-images-idx3-ubyte.gz", gzip.compress(_idx(np.zeros((10, 32, 32)))), "32x32"),
        "count mismatch": ("t10k-labels-idx1-ubyte.gz", gzip.compress(_idx(labels[:9_999])),
                           "holds 9,999 items, expected 10,000"),
        "label outside 0-9": ("t10k-labels-idx1-ubyte.gz", gzip.compress(_idx(outside)), "label 12 is outside 0-9"),
        "checksum mismatch": ("t10k-labels-idx1-ubyte.gz", gzip.compress(_idx(changed)), "checksum mismatch"),
    }


def _data_dir_with(tmp_path, name, content):
    """A copy of the shipped data folder (links to the real files) with `name` replaced by `content`."""
    folder = tmp_path / "data"
    folder.mkdir()
    for real in (ROOT / "data" / "fashion").glob("*.gz"):
        (folder / real.name).symlink_to(real)
    (folder / name).unlink()
    if content is not None:
        (folder / name).write_bytes(content)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("case", list(_broken_files()))
def test_bad_data_is_refused_in_one_line_and_nothing_is_written(tmp_path, case):
    name, content, message = _broken_files()[case]
    data_dir = _data_dir_with(tmp_path, name, content)
    out = tmp_path / "out"
    (out / "history").mkdir(parents=True)
    earlier = out / "history" / "earlier.json"
    earlier.write_text('{"run": "earlier"}')
    proc = run_script("fashion_mnist.py", "--data-dir", data_dir, "--out", out, "--limit", 500, "--epochs", 1)
    assert_clean_error(proc, 1, name, message)
    assert sorted(p.name for p in out.rglob("*")) == ["earlier.json", "history"]  # nothing new, nothing changed
    assert earlier.read_text() == '{"run": "earlier"}'


@pytest.mark.slow
def test_no_verify_trains_on_data_modified_on_purpose(tmp_path):
    name, content, _ = _broken_files()["checksum mismatch"]
    data_dir = _data_dir_with(tmp_path, name, content)
    proc = run_script("fashion_mnist.py", "--data-dir", data_dir, "--no-verify", "--limit", 500, "--val-fraction",
                      0.02, "--epochs", 1, "--out", tmp_path, "--run-name", "modified")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "history" / "modified.json").read_text())
    assert record["status"] == "completed" and record["hyperparameters"]["verify"] is False
    assert str(data_dir) in record["data_source"]


@pytest.mark.slow
def test_a_flag_that_would_fail_later_is_refused_before_the_name_is_claimed(tmp_path):
    """A seed of 2**32 once passed the flag check and failed inside Keras, after the run's name was claimed:
    the name was used up."""
    proc = run_script("fashion_mnist.py", "--seed", 2**32, "--run-name", "s", "--out", tmp_path)
    assert_clean_error(proc, 2, "--seed")
    assert not (tmp_path / "tensorboard_logs" / "s").exists()
    proc = run_script("fashion_mnist.py", "--seed", 2**32 - 1, "--run-name", "s", "--out", tmp_path,
                      "--limit", 1000, "--val-fraction", 0.02, "--epochs", 1)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_a_run_that_fails_before_training_gives_its_name_back(tmp_path):
    script = ("import sys\nfrom fmnist.run.names import reserve_run\nreserve_run(sys.argv[1], 'early', None)\n"
              "raise SystemExit('failed before its first epoch')")
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1 and "failed before" in proc.stderr
    assert not (tmp_path / "tensorboard_logs" / "early").exists()
    from fmnist.run.names import reserve_run

    assert reserve_run(tmp_path, "early", None).name == "early"


@pytest.mark.slow
def test_run_files_honour_the_umask_like_open(tiny_run):
    """mkstemp creates files 0600: a teammate or a web server could not read a run's model, history or record."""
    import os

    out, _, _ = tiny_run
    umask = os.umask(0)
    os.umask(umask)
    for path in (out / "models" / "tiny.keras", out / "history" / "tiny.pkl", out / "history" / "tiny.json"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


@pytest.mark.slow
@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_atomic_writes_give_the_mode_a_new_file_would_get(tmp_path, umask):
    script = ("import os, sys\nfrom fmnist.run.files import write_file\n"
              "write_file(sys.argv[1], b'x')\nopen(sys.argv[2], 'w').close()")
    subprocess.run([sys.executable, "-c", script, tmp_path / "atomic", tmp_path / "plain"], check=True, cwd=ROOT,
                   preexec_fn=lambda: os.umask(umask))
    assert (tmp_path / "atomic").stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777
    assert (tmp_path / "atomic").stat().st_mode & 0o777 == 0o666 & ~umask
