"""fmnist/run/names.py: run names (never reused, claimed once, given back by a run that fails early) and the lock
that keeps a run to one process."""

import contextlib
import json
import signal
import subprocess
import sys

import pytest
from conftest import ROOT, assert_clean_error, run_script, start_script, wait_for_epochs


@pytest.mark.slow
def test_a_run_name_is_never_reused_and_nothing_is_overwritten(tiny_run):
    out, _, _ = tiny_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    proc = run_script("fashion_mnist.py", "--limit", 1000, "--epochs", 1, "--out", out, "--run-name", "tiny")
    assert_clean_error(proc, 1, "already exists")
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_claimed_names_are_never_handed_out_twice(tmp_path):
    """Evaluations and sweeps claim their output stem by creating a file exclusively, so that two processes
    started at once take different names; a run name is claimed by its folder."""
    from fmnist.run.names import claimed_name, reserve_run

    suffixes = ["-evaluation.json", "-confusion.png"]
    with contextlib.ExitStack() as held:
        claims = [held.enter_context(claimed_name(tmp_path, "m", suffixes, "-evaluation.json")) for _ in range(3)]
        assert claims == ["m", "m-2", "m-3"]
        (tmp_path / "m-4-confusion.png").write_bytes(b"")  # a user's file: its name is skipped, not replaced
        assert held.enter_context(claimed_name(tmp_path, "m", suffixes, "-evaluation.json")) == "m-5"
    assert not (tmp_path / "m-evaluation.json").exists()  # a claim left empty gives its name back
    first = reserve_run(tmp_path / "out", None, "cnn-20260101-000000")
    second = reserve_run(tmp_path / "out", None, "cnn-20260101-000000")
    assert (first.name, second.name) == ("cnn-20260101-000000", "cnn-20260101-000000-2")


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
def test_a_run_reserved_by_one_process_is_refused_to_another(tmp_path):
    import os
    import subprocess
    import sys

    from fmnist.run.names import reserve_run

    paths = reserve_run(tmp_path, "mine", None)
    script = ("import sys\nfrom pathlib import Path\nfrom fmnist.run.names import RunPaths, lock_run\n"
              "lock_run(RunPaths('mine', *[Path(p) for p in sys.argv[1:]]))")
    other = subprocess.run([sys.executable, "-c", script, paths.model, paths.history, paths.record, paths.tensorboard],
                           capture_output=True, text=True, cwd=ROOT)
    assert f"run mine is being trained by process {os.getpid()}" in other.stderr
    assert (paths.tensorboard / ".lock").read_text() == f"{os.getpid()}\n"


def _snapshot(folder):
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_a_run_in_use_is_refused_to_a_second_process_and_freed_when_its_process_dies(tmp_path):
    """The run stopped with Ctrl-Z (SIGSTOP), mid-training: --resume names its process and touches nothing. Once it
    is killed the lock is gone, and --resume removes the run's own temporary files but not those of run
    `busy.keras`, whose names start the same way."""
    import os

    out = tmp_path / "out"
    log = tmp_path / "busy.log"
    proc = start_script("fashion_mnist.py", "--limit", 1000, "--val-fraction", 0.02, "--epochs", 3, "--out", out,
                        "--run-name", "busy", log=log)
    try:
        wait_for_epochs(proc, out / "history" / "busy.json", 1, log)
        os.kill(proc.pid, signal.SIGSTOP)
        own_in_flight = out / "models" / ".busy.keras.x1y2z3ab.tmp.keras"
        others_in_flight = out / "models" / ".busy.keras.keras.q9w8e7rt.tmp.keras"  # run `busy.keras`'s model
        own_in_flight.write_bytes(b"half a model")
        others_in_flight.write_bytes(b"half a model")
        before = _snapshot(out)
        second = run_script("fashion_mnist.py", "--resume", "busy", "--out", out)
        assert_clean_error(second, 1, f"run busy is being trained by process {proc.pid}")
        assert _snapshot(out) == before
    finally:
        proc.kill()
        proc.wait(timeout=60)
    resumed = run_script("fashion_mnist.py", "--resume", "busy", "--out", out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((out / "history" / "busy.json").read_text())["status"] == "completed"
    assert not own_in_flight.exists() and others_in_flight.exists()


def test_a_name_whose_report_figure_exists_is_taken_so_all_of_a_runs_files_share_its_name(tmp_path):
    from fmnist.run.names import reserve_run

    (tmp_path / "history").mkdir()
    (tmp_path / "history" / "R-confusion.png").write_bytes(b"a user's figure")
    paths = reserve_run(tmp_path, None, "R")
    assert paths.name == "R-2" and all(p.name.startswith("R-2-") for p in paths.figures())
