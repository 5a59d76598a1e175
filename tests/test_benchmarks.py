"""The benchmarks still run end to end, at a size a test can afford. Their timings are not checked here (this
machine is shared and noisy): only that they measure what they say and print it."""

import json
import re
import statistics

import pytest
from conftest import run_script

from fmnist.run.records import read_history

pytestmark = pytest.mark.slow  # every test here trains or starts processes


def test_train_speed_prints_a_ratio_for_each_setting():
    proc = run_script("benchmarks/train_speed.py", "--rounds", "1", "--images", "512", "--batch-sizes", "64",
                      "--steps-per-execution", "8", "--precisions", "float32", "mixed_bfloat16")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("Machine: ") and "Versions: " in proc.stdout
    rows = [line for line in proc.stdout.splitlines() if re.search(r"\d+\.\d\dx ", line)]
    # The baseline recipe, then the project's path at batch 64 with Keras's ops and its own, at each precision.
    assert len(rows) == 5
    assert rows[0].startswith("baseline recipe") and " 1.00x " in rows[0]
    assert "float32" in rows[1] and "Keras's Adam and dropout" in rows[1] and "byte-mask dropout" in rows[2]
    assert "mixed_bfloat16" in rows[3] and "mixed_bfloat16" in rows[4]
    assert "cnn: 87 MFLOP per training image" in proc.stdout
    assert re.search(r"peak per core and cycle: \d+ float32 FLOP, \d+ bfloat16 FLOP", proc.stdout)
    assert re.search(r"^Baseline epoch: \d+\.\d s \(60,000 images", proc.stdout, re.MULTILINE)


@pytest.mark.parametrize("keep", ["best", "last"])
def test_time_to_accuracy_runs_the_command_line_per_seed_and_reports_the_accuracy_it_printed(keep):
    model = ["--model", "lenet"] if keep == "best" else ["--model=lenet"]  # both spellings replace --model fast
    # keep=last: two seeds, the baseline timed before, between and after them, and 3 epochs of which the 2nd and
    # the last are scored
    seeds, baseline, epochs, scored = (["7"], ["--baseline-rounds", "0"], 2, "per epoch") if keep == "best" else (
        ["7", "8"], ["--baseline-rounds", "1", "--baseline-images", "1024", "--score-every", "2"], 3,
        "at epochs 2, 3:")
    proc = run_script("benchmarks/time_to_accuracy.py", "--seeds", *seeds, *baseline, "--", *model, "--epochs",
                      str(epochs), "--limit", "3000", "--keep", keep)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (f"Command: python fashion_mnist.py {' '.join(model)} --epochs {epochs} --limit 3000 --keep {keep} "
            f"--seed S  (seeds {', '.join(seeds)})") in proc.stdout
    finals = []
    for seed in seeds:
        run = re.search(rf"^seed {seed}: 93% at never, 94% at never, 95% at never, 96% at never; final (0\.\d+) "
                        rf".* after {epochs} epochs, \d+ s in all, peak RSS [\d.]+ GB; "
                        rf"{scored} \[(0\.\d+), (0\.\d+)\]",
                        proc.stdout, re.MULTILINE)
        assert run, proc.stdout[-2000:]
        final, first, second = (float(x) for x in run.groups())
        # The run reports on the weights of the epoch it kept, as measured at that epoch's end.
        assert final == second if keep == "last" else final in (first, second)
        assert 0.6 < final < 0.93  # 3,000 images for 2 epochs learn something, and nothing like the targets
        finals.append(100 * final)
    summary = re.search(rf"^Over seeds {', '.join(seeds)}: test accuracy (\d+\.\d\d)( ± (\d+\.\d\d))? %; "
                        r"command to result \d+ (± \d+ )?s", proc.stdout, re.MULTILINE)
    assert summary, proc.stdout[-1000:]
    assert float(summary.group(1)) == pytest.approx(statistics.mean(finals), abs=0.006)
    if len(seeds) > 1:
        assert float(summary.group(3)) == pytest.approx(statistics.stdev(finals), abs=0.006)
    if keep == "last":  # with the baseline measured, every time is also in baseline epochs of the fastest baseline
        assert re.search(r"command to result \d+ ± \d+ s \(\d+\.\d\d ± \d+\.\d\d baseline epochs\) "
                         r"\(fastest \d+\.\d\d\)", proc.stdout), proc.stdout[-1000:]
        measured = re.search(r"^Baseline epochs measured: ([\d.]+), ([\d.]+), ([\d.]+) s; the unit is the fastest, "
                             r"([\d.]+) s", proc.stdout, re.MULTILINE)  # before, between and after the two runs
        assert measured, proc.stdout[-1000:]
        assert float(measured.group(4)) == min(float(x) for x in measured.groups()[:3])


def test_inference_speed_times_every_runtime_at_batch_1_and_a_large_batch():
    proc = run_script("benchmarks/inference_speed.py", "--calls", "3", "--rounds", "1", "--batch", "16")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("Machine: ") and "CPU flags: " in proc.stdout
    labels = ["Keras model.predict", "Keras model(x)", "TF SavedModel", "ONNX Runtime", "LiteRT float32",
              "LiteRT int8"]
    rows = [line for line in proc.stdout.splitlines() if re.match(r"(Keras|TF |ONNX|LiteRT)", line)]
    assert [row[:20].strip() for row in rows] == labels
    for row in rows:  # median ms, p99 ms, images/s, ratio to predict, images/s at the large batch
        assert re.search(r" [\d.]+ ms +[\d.]+ ms +[\d,]+ +[\d.]+x +[\d,]+$", row), row
    assert re.search(r"Fastest at batch 1: .*, \d+x Keras model.predict \(goal: >= 20x\)", proc.stdout)


def test_serve_speed_loads_both_servers_and_prints_the_table():
    proc = run_script("benchmarks/serve_speed.py", "--seconds", "0.5", "--clients", "1", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("Machine: ") and "CPU flags: " in proc.stdout
    rows = re.findall(r"^(ours|naive) +(\d+) +([\d,]+) +([\d.]+) +([\d.]+) +(\d+) +([\d.]+)x$", proc.stdout,
                      re.MULTILINE)
    assert [(server, clients) for server, clients, *_ in rows] == [("naive", "1"), ("ours", "1"), ("naive", "2"),
                                                                  ("ours", "2")]
    for _, _, rate, p50, p99, errors, _ in rows:  # every request answered, with latencies that make sense
        assert int(rate.replace(",", "")) > 0 and 0 < float(p50) <= float(p99) and errors == "0"
    assert re.search(r"^At 2 clients: [\d,]+ requests/s, p99 [\d.]+ ms, 0 errors, \d+x naive", proc.stdout,
                     re.MULTILINE)


def test_resnet18_batch_sizes_trains_one_run_per_batch_size_and_writes_its_histories_and_figure(tmp_path):
    proc = run_script("benchmarks/resnet18_batch_sizes.py", "--width", "4", "--limit", "4096", "--epochs", "2",
                      "--batch-sizes", "32", "128", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ResNet-18 width 4, Adam at 0.01, 4,096 training images; CPU, Keras 3." in proc.stdout
    summary = json.loads((tmp_path / "resnet18-w4-batch-sizes.json").read_text())
    assert [run["batch_size"] for run in summary["runs"]] == [32, 128]
    for run in summary["runs"]:
        history = read_history(tmp_path / f"resnet18-w4-bs{run['batch_size']}.pkl")
        assert len(history["accuracy"]) == len(history["val_loss"]) == run["epochs"] == 2
        assert run["seconds_per_epoch"] > 0 and 0 < run["test_accuracy"] <= 1
        assert re.search(rf"^\| {run['batch_size']} \| 2 \| [\d.]+ \([\d.]+\) \| [\d.]+ % \| "
                         rf"{100 * run['test_accuracy']:.2f} % \|$", proc.stdout, re.MULTILINE)
    assert summary["runs"][0]["test_accuracy"] > 0.5  # 256 steps of a net of 4 channels learn (71 %); chance is 0.1
    assert (tmp_path / "resnet18-w4-batch-sizes.png").read_bytes().startswith(b"\x89PNG")

    again = run_script("benchmarks/resnet18_batch_sizes.py", "--width", "4", "--batch-sizes", "128", "--out",
                       tmp_path)  # a second run with the same files refuses before it trains
    assert again.returncode == 1 and again.stderr.strip().endswith(
        "resnet18-w4-bs128.pkl already exists; remove it or pass another --out folder")
    assert "Traceback" not in again.stderr and "## Batch" not in again.stdout
