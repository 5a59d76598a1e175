"""fmnist/cli.py and the entry script's commands: help that answers without loading TensorFlow, and show-data."""

import pytest
from conftest import ROOT, png_size, read_tensors, run_script


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
@pytest.mark.parametrize("command", ["evaluate", "predict", "export", "show-data"])
def test_command_help_answers_without_tensorflow(command):
    import subprocess
    import sys

    code = (f"import runpy, sys; sys.argv = ['fashion_mnist.py', '{command}', '--help']\n"
            "try: runpy.run_path('fashion_mnist.py', run_name='__main__')\n"
            "except SystemExit: pass\n"
            "print('TF_LOADED' if 'tensorflow' in sys.modules else 'TF_NOT_LOADED')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"fashion_mnist.py {command}" in proc.stdout and proc.stdout.strip().endswith("TF_NOT_LOADED")


@pytest.mark.slow
def test_show_data_writes_a_labelled_sprite_and_a_tensorboard_image(tmp_path):
    proc = run_script("fashion_mnist.py", "show-data", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sprite = tmp_path / "fashion-mnist-samples.png"
    width, height = png_size(sprite)
    assert width > 1000 and height > 800
    images, _ = read_tensors(tmp_path / "tensorboard_logs" / "dataset")
    assert list(images) == ["dataset/samples"]

    before = sprite.read_bytes()
    from fmnist.cli import show_data

    show_data(tmp_path)
    assert sprite.read_bytes() == before  # never replaced: the second sprite takes a suffix
    assert (tmp_path / "fashion-mnist-samples-2.png").exists()
    assert (tmp_path / "tensorboard_logs" / "dataset-2").is_dir()
