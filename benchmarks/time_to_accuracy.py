"""Wall-clock seconds from the command to a test accuracy, on the real command-line path, over named seeds.

    python benchmarks/time_to_accuracy.py --model fast                 # seeds 1337, 2 and 3: mean and sd
    python benchmarks/time_to_accuracy.py --seeds 1337 -- --epochs 40 --augment flip-shift
    python benchmarks/time_to_accuracy.py --model best --seeds 1337    # one to two hours
    python benchmarks/time_to_accuracy.py --model resnet20 --score-every 5   # score 1 epoch in 5 after the run
    python benchmarks/time_to_accuracy.py -- --precision float32       # as on a CPU without bf16

Each run is `python fashion_mnist.py ARGS --seed S` in a fresh process, observed by a callback that saves the
weights at every epoch end and notes the time. Only once the run has printed its result are those weights scored
on the test set. Scoring them during the run instead made the following epochs up to twice as slow (the training
then ran on one core of two), so the observer does as little as it can; the time its saving takes is taken out of
the clock, and the times are those of the plain command up to its printed result. The accuracy is the one the run
reports: with test-time augmentation when the recipe uses it.

Times are also given in baseline epochs: seconds divided by the seconds the baseline recipe (fp32 model.fit on
NumPy arrays, batch 64) takes for 60,000 images on this machine, measured by benchmarks/train_speed.py before,
between and after the runs, so that the ratio holds on any CPU. A shared machine only ever slows a measurement
down, so the unit is the fastest of those baseline epochs: the ratios are, if anything, too high.
The headline is the mean and standard deviation over the seeds, as cifar10-airbench states its results.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # as in the runs it times
sys.path.insert(0, str(ROOT))

from fmnist.config import Number  # noqa: E402
from fmnist.errors import run_guarded  # noqa: E402

TARGETS = (0.93, 0.94, 0.95, 0.96)
SEEDS = (1337, 2, 3)


def child(log_path, score_every, cli_args):
    """Runs inside the measured process: fashion_mnist.main with a callback that saves the weights at every
    epoch end, keeping those of every `score_every`-th epoch and of the last (an early stop can end a run at any
    epoch); after the run, the test accuracy of the weights kept, one JSON line per epoch kept."""
    import keras

    import fashion_mnist
    from fmnist.config import parse_config
    from fmnist.data import load_fashion_mnist
    from fmnist.evaluation import predict_probabilities

    weights_dir = Path(log_path).with_suffix(".weights")
    weights_dir.mkdir()

    class EpochWeights(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.measuring, self.epochs = 0.0, []

        def on_epoch_end(self, epoch, logs=None):
            start = time.perf_counter()
            if self.epochs and self.epochs[-1]["epoch"] % score_every:  # kept only while it was the last
                self.epochs.pop()["weights"].unlink()
            path = weights_dir / f"epoch-{epoch + 1}.weights.h5"
            self.model.save_weights(path)
            self.measuring += time.perf_counter() - start
            self.epochs.append({"epoch": epoch + 1, "time": time.time(), "measuring": self.measuring,
                                "weights": path})

    observer = EpochWeights()
    config, _ = parse_config(cli_args, fashion_mnist.DEFAULTS)  # with test-time augmentation if the run uses it
    fashion_mnist.main(cli_args, extra_callbacks=[observer])
    finished = time.time()  # the run has printed its test result
    test = load_fashion_mnist(config.data_dir, config.verify)
    with open(log_path, "w") as f:
        for epoch in observer.epochs:
            weights = epoch.pop("weights")
            observer.model.load_weights(weights)
            weights.unlink()  # a long run's weights would fill gigabytes
            probabilities = predict_probabilities(observer.model, test.x_test, tta=config.tta)
            accuracy = float((probabilities.argmax(axis=1) == test.y_test).mean())
            f.write(json.dumps(epoch | {"accuracy": accuracy, "finished": finished}) + "\n")


def one_run(cli_args, out, index, score_every):
    log = out / f"epochs-{index}.jsonl"
    run_name = f"tta-bench-{index}"
    args = [*cli_args, "--out", str(out), "--run-name", run_name]
    command = [sys.executable, __file__, "--child", str(log), str(score_every), "--", *args]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    start = time.time()
    with open(out / f"run-{index}.log", "w") as output:
        proc = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        # wait4 gives this run's own peak resident set (kilobytes on Linux), not that of every child so far.
        _, status, usage = os.wait4(proc.pid, 0)
    exit_code = proc.returncode = os.waitstatus_to_exitcode(status)  # reaped: Popen must not wait again
    peak_rss_gb = usage.ru_maxrss / 1e6
    if exit_code != 0:
        lines = (out / f"run-{index}.log").read_text(errors="replace").strip().splitlines() or ["no output"]
        sys.exit(f"error: run {index} ({' '.join(cli_args)}) failed (exit {exit_code}): {lines[-1]}")
    epochs = [json.loads(line) for line in log.read_text().splitlines()]
    record = json.loads((out / "history" / f"{run_name}.json").read_text())
    reached = {}
    for target in TARGETS:
        hit = next((e for e in epochs if e["accuracy"] >= target), None)
        reached[target] = None if hit is None else hit["time"] - start - hit["measuring"]
    total = epochs[-1]["finished"] - start - epochs[-1]["measuring"]
    return {"reached": reached, "total": total, "final": record["test"]["accuracy"],
            "top5": record["test"]["top5_accuracy"], "peak_rss_gb": peak_rss_gb,
            "epochs": record["epochs_run"], "curve": {e["epoch"]: round(e["accuracy"], 4) for e in epochs}}


def baseline_epoch_seconds(rounds, images):
    """The baseline recipe's seconds for 60,000 images on this machine now (benchmarks/train_speed.py)."""
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_speed.py"), "--baseline-only",
                           "--rounds", str(rounds), "--images", str(images)], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    found = re.search(r"^Baseline epoch: ([\d.]+) s", proc.stdout, re.MULTILINE)
    if proc.returncode != 0 or not found:
        sys.exit(f"error: timing the baseline epoch failed (exit {proc.returncode}): {proc.stderr[-500:]}")
    return float(found.group(1))


def mean_sd(values, unit=1.0, digits=2):
    """`mean ± sd` of `values` / `unit` (just the value for one run)."""
    scaled = [v / unit for v in values]
    sd = f" ± {statistics.stdev(scaled):.{digits}f}" if len(scaled) > 1 else ""
    return f"{statistics.mean(scaled):.{digits}f}{sd}"


def timing(values, baseline_epoch):
    """`145 ± 3 s (2.78 ± 0.06 baseline epochs)`, or `never` where a run (None) never got there."""
    if None in values:
        return "never"
    in_units = f" ({mean_sd(values, baseline_epoch)} baseline epochs)" if baseline_epoch else ""
    return f"{mean_sd(values, digits=0)} s{in_units}"


def main():
    if "--child" in sys.argv:
        split = sys.argv.index("--")
        log_path, score_every = sys.argv[sys.argv.index("--child") + 1:split]
        child(log_path, int(score_every), sys.argv[split + 1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="fast", help="shorthand for `-- --model NAME`")
    parser.add_argument("--seeds", type=Number(int, 0, 2**32), nargs="+", default=SEEDS,
                        help="one run per seed, each passed as --seed")
    parser.add_argument("--baseline-rounds", type=Number(int, 0), default=2,
                        help="rounds of the baseline recipe timed before, between and after the runs (0: report "
                             "seconds only)")
    parser.add_argument("--baseline-images", type=Number(int, 1), default=25_600,
                        help="images per round of the baseline")
    parser.add_argument("--score-every", type=Number(int, 1), default=1, metavar="N",
                        help="score the weights of every Nth epoch and the last only, as scoring every epoch after a "
                             "long run takes many minutes; a target's time is then up to N-1 epochs late")
    parser.add_argument("cli_args", nargs="*", help="after --: more flags for fashion_mnist.py")
    args = parser.parse_args()
    if any(arg == "--seed" or arg.startswith("--seed=") for arg in args.cli_args):
        parser.error("give the seeds as --seeds S1 S2 ..., before the --")
    names_model = any(arg == "--model" or arg.startswith("--model=") for arg in args.cli_args)
    cli_args = args.cli_args if names_model else ["--model", args.model, *args.cli_args]
    seeds = ", ".join(map(str, args.seeds))

    from machine import describe_machine

    print(describe_machine())
    print(f"Command: python fashion_mnist.py {' '.join(cli_args)} --seed S  (seeds {seeds})")
    baselines = []

    def time_baseline(when):
        if args.baseline_rounds:
            baselines.append(baseline_epoch_seconds(args.baseline_rounds, args.baseline_images))
            print(f"Baseline epoch {when}: {baselines[-1]:.1f} s", flush=True)

    results = []
    with tempfile.TemporaryDirectory(prefix="fmnist-bench-") as tmp:
        for i, seed in enumerate(args.seeds):
            time_baseline("before the runs" if i == 0 else f"before seed {seed}")
            r = one_run([*cli_args, "--seed", str(seed)], Path(tmp), i + 1, args.score_every)
            results.append(r)
            print(f"seed {seed}: " + ", ".join(f"{t:.0%} at {timing([r['reached'][t]], None)}" for t in TARGETS)
                  + f"; final {r['final']:.4f} (top-5 {r['top5']:.4f}) after {r['epochs']} epochs, "
                  f"{r['total']:.0f} s in all, "
                  f"peak RSS {r['peak_rss_gb']:.2f} GB; "
                  + (f"per epoch {list(r['curve'].values())}" if args.score_every == 1 else
                     f"at epochs {', '.join(map(str, r['curve']))}: {list(r['curve'].values())}"), flush=True)
    time_baseline("after the runs")

    unit = min(baselines) if baselines else None
    if unit:
        print(f"Baseline epochs measured: {', '.join(f'{b:.1f}' for b in baselines)} s; the unit is the fastest, "
              f"{unit:.1f} s")
    totals = [r["total"] for r in results]
    fastest = f" (fastest {min(totals) / unit:.2f})" if unit else ""
    print(f"\nOver seeds {seeds}: test accuracy {mean_sd([100 * r['final'] for r in results])} %; "
          f"command to result {timing(totals, unit)}{fastest}; "
          + ", ".join(f"{t:.0%} first at {timing([r['reached'][t] for r in results], unit)}" for t in TARGETS))


if __name__ == "__main__":
    run_guarded(main)
