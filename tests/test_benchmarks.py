"""The benchmarks still run end to end, at a size a test can afford. Their timings are not checked here (this
machine is shared and noisy): only that they measure what they say and print it."""

import re

import pytest
from conftest import run_script

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
def test_time_to_accuracy_runs_the_command_line_and_reports_the_accuracy_it_printed(keep):
    model = ["--model", "lenet"] if keep == "best" else ["--model=lenet"]  # both spellings replace --model fast
    baseline = ["--baseline-rounds", "1", "--baseline-images", "1024"] if keep == "last" else ["--baseline-rounds", "0"]
    proc = run_script("benchmarks/time_to_accuracy.py", "--runs", "1", *baseline, "--", *model, "--epochs", "2",
                      "--limit", "3000", "--keep", keep)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"Command: python fashion_mnist.py {' '.join(model)} --epochs 2 --limit 3000 --keep {keep}  (1 runs)" \
        in proc.stdout
    run = re.search(r"run 1: 93% at never, 94% at never, 95% at never; final (0\.\d+) .* after 2 epochs, "
                    r"\d+ s in all, peak RSS [\d.]+ GB; per epoch \[(0\.\d+), (0\.\d+)\]", proc.stdout)
    assert run, proc.stdout[-2000:]
    final, first, second = (float(x) for x in run.groups())
    # The run reports on the weights of the epoch it kept, as measured at that epoch's end.
    assert final == second if keep == "last" else final in (first, second)
    assert 0.6 < final < 0.93  # 3,000 images for 2 epochs learn something, and nothing like the targets
    assert "Median of 1: " in proc.stdout
    if keep == "last":  # with the baseline measured, every time is also in baseline epochs
        assert re.search(r"command to result \d+ s \(\d+\.\d\d baseline epochs\)", proc.stdout), proc.stdout[-1000:]


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
