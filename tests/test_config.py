"""fmnist/config.py: the settings declared once, the parser built from them (flags, recipes over defaults, range
checks, exit 2) and the --sweep grid."""

import pytest
from conftest import assert_clean_error, run_script

from fashion_mnist import DEFAULTS
from fmnist.config import parse_config
from fmnist.models import RECIPES


def test_flags_override_the_recipe_which_overrides_the_defaults():
    plain, _ = parse_config([], DEFAULTS)
    assert (plain.model, plain.epochs, plain.batch_size, plain.learning_rate) == ("cnn", 20, 64, 0.001)
    assert plain.augment == DEFAULTS["augment"] and plain.tta == DEFAULTS["tta"]

    for model, recipe in RECIPES.items():
        config, _ = parse_config(["--model", model], DEFAULTS)
        for key, value in recipe.items():
            assert getattr(config, key) == value

    tuned, _ = parse_config(["--model", "fast", "--epochs", "3", "--tta", "none"], DEFAULTS)
    assert tuned.epochs == 3 and tuned.tta == "none"
    assert tuned.batch_size == RECIPES["fast"]["batch_size"]


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


def test_sweep_grid_is_the_product_of_all_sweeps():
    from fashion_mnist import DEFAULTS as defaults
    from fmnist.config import parse_config

    config, grid = parse_config(["--sweep", "batch-size=64,256", "--sweep", "learning_rate=1e-3,3e-3,0.01"],
                                defaults)
    assert len(grid) == 6 and grid[0] == {"batch_size": 64, "learning_rate": 0.001}
    assert {(g["batch_size"], g["learning_rate"]) for g in grid} == {(b, lr) for b in (64, 256)
                                                                      for lr in (0.001, 0.003, 0.01)}
    assert parse_config([], defaults)[1] == []


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
        (["--shift", "0"], "--shift"),
        (["--learning-rate", "inf"], "--learning-rate"),
        (["--precision", "float8"], "--precision"),
        (["--resume", "a/b"], "--resume"),
        (["--no-such-flag"], "unrecognized"),
    ],
)
def test_bad_flags_exit_2_with_a_clear_message(args, message):
    assert_clean_error(run_script("fashion_mnist.py", *args), 2, message)


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
@pytest.mark.parametrize(
    "sweep, message",
    [
        ("colour=red,blue", "'colour' is not a hyperparameter"),
        ("batch_size=64,0", "batch_size=0"),
        ("batch_size=64,abc", "not a valid int"),
        ("model=cnn,vgg", "'vgg' is not one of"),
        ("batch_size", "is not NAME=V1,V2"),
        ("epochs=1,1", "lists a value twice"),
    ],
)
def test_a_bad_sweep_exits_2_before_training(sweep, message):
    assert_clean_error(run_script("fashion_mnist.py", "--sweep", sweep), 2, message)


@pytest.mark.slow
def test_the_same_hyperparameter_cannot_be_swept_twice():
    proc = run_script("fashion_mnist.py", "--sweep", "epochs=1,2", "--sweep", "epochs=3")
    assert_clean_error(proc, 2, "swept twice")
