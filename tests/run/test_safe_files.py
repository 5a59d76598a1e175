"""fmnist/run/files.py: the safe writer (a file's own temporaries only, the mode a new file would get) and the
writable-folder check."""

import os
import subprocess
import sys

import pytest
from conftest import ROOT, assert_clean_error, run_script


@pytest.mark.slow
def test_temporary_files_of_a_file_are_its_own_only(tmp_path):
    from fmnist.run.files import temporary_files

    model = tmp_path / "a.keras"
    own = [tmp_path / ".a.keras.k3j_x9a1.tmp.keras"]
    others = [tmp_path / ".a.keras.keras.k3j_x9a1.tmp.keras", tmp_path / ".a.keras.k3j.tmp.keras.tmp.keras",
              tmp_path / ".ab.keras.k3j_x9a1.tmp.keras", tmp_path / "a.keras.k3j_x9a1.tmp.keras"]
    for path in own + others:
        path.write_bytes(b"")
    assert temporary_files(model) == own


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


@pytest.mark.parametrize("folder", [False, True])
def test_sigterm_the_moment_a_temporary_exists_leaves_nothing_behind(tmp_path, monkeypatch, folder):
    """The signal arrives right after the temporary is made, before the writer holds its name: it must still be
    removed (the int8 export test once left a card's temporary behind this way)."""
    import signal
    import tempfile

    from fmnist.errors import Terminated, _raise_terminated
    from fmnist.run import files

    def made_then_sigterm(real):
        def make(*args, **kwargs):
            made = real(*args, **kwargs)
            signal.raise_signal(signal.SIGTERM)  # run_guarded's handler: Terminated, wherever the program is
            return made
        return make

    name = "mkdtemp" if folder else "mkstemp"
    monkeypatch.setattr(tempfile, name, made_then_sigterm(getattr(tempfile, name)))
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        with pytest.raises(Terminated):
            with files.staged(tmp_path / "out.savedmodel" if folder else tmp_path / "record.json", folder=folder):
                pytest.fail("the signal must stop the write before its block runs")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert list(tmp_path.iterdir()) == []


def test_a_signal_waits_for_a_deferred_block_that_says_so_and_a_second_one_acts_at_once(capsys):
    """signals_deferred(waiting_for=...), which the exports hold around TensorFlow's converters: a SIGTERM that
    landed inside one was swallowed, or came out as a RuntimeError, or cut short the removal of a temporary."""
    import signal

    from fmnist.errors import Terminated, _raise_terminated, signals_deferred

    steps = []
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        with pytest.raises(Terminated):
            with signals_deferred(waiting_for="the converter returns"):
                signal.raise_signal(signal.SIGTERM)
                steps.append("the block completed")
        assert steps == ["the block completed"]
        assert capsys.readouterr().err.strip() == \
            "SIGTERM: stopping once the converter returns (send it again to stop at once)"
        with pytest.raises(Terminated):
            with signals_deferred(waiting_for="the converter returns"):
                signal.raise_signal(signal.SIGTERM)
                signal.raise_signal(signal.SIGTERM)
                steps.append("not reached")
        assert steps == ["the block completed"]
        assert capsys.readouterr().err.count("SIGTERM: stopping once") == 1
        with pytest.raises(Terminated):
            with signals_deferred():  # a short block that must complete: every signal waits, silently
                signal.raise_signal(signal.SIGTERM)
                signal.raise_signal(signal.SIGTERM)
                steps.append("completed again")
        assert steps == ["the block completed", "completed again"]
        assert capsys.readouterr().err == ""
    finally:
        signal.signal(signal.SIGTERM, previous)
