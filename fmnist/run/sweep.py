"""Sweeps: one training per combination of --sweep values on the same data and seed, then one figure and one
table that compare them: history/<sweep>-compare.png, history/<sweep>-results.md and .csv."""

import csv
import io
import shlex
import sys
import time
from pathlib import Path

from fmnist.errors import UserError, error_text
from fmnist.figures import figure_png, plot_histories
from fmnist.run.files import writable_folder, write_file
from fmnist.run.names import claimed_name, reserve_run
from fmnist.run.records import read_history

OUTPUT_SUFFIXES = ("-compare.png", "-results.md", "-results.csv")


def run_label(overrides):
    return "-".join(f"{key}{value}" for key, value in overrides.items())


def results_rows(grid, records):
    """One dict per run: the swept values, then the final test metrics (blank for a run that failed)."""
    rows = []
    for overrides, maybe_record in zip(grid, records, strict=True):
        record = maybe_record or {"run": run_label(overrides), "status": "failed"}
        test = record.get("test") or {}
        row = {"run": record["run"], "status": record["status"], **overrides,
               "epochs": record.get("epochs_run", ""), "train_seconds": record.get("train_seconds", ""),
               **{f"test_{key}": test.get(key, "") for key in ("loss", "accuracy", "top5_accuracy")}}
        rows.append({key: round(v, 4) if isinstance(v, float) else v for key, v in row.items()})
    return rows


def markdown_table(rows):
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(row[key]) for key in header) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_table(rows):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def run_sweep(config, grid, data, train_run):
    """Train `config` once per entry of `grid` with train_run(config, data, paths=...) -> run record, then compare.

    The sweep's name (history/<sweep>-results.md, created at once) and all its runs' names are claimed before
    the first run trains, so that a sweep started at the same moment takes other names. A run that fails
    (diverges, or a value that only fails at run time) is reported and the others go on; the exit code is then 1.
    """
    history_dir = writable_folder(config.out, ["history"]) / "history"
    with claimed_name(history_dir, config.run_name or f"sweep-{time.strftime('%Y%m%d-%H%M%S')}", OUTPUT_SUFFIXES,
                      "-results.md") as stem:
        runs = [reserve_run(config.out, f"{stem}-{run_label(overrides)}", None) for overrides in grid]
        return _train_and_compare(config, grid, data, train_run, stem=stem, runs=runs)


def _train_and_compare(config, grid, data, train_run, *, stem, runs):
    import keras

    history_dir = Path(config.out) / "history"
    records = []
    for i, (overrides, paths) in enumerate(zip(grid, runs, strict=True), 1):
        print(f"\n=== Sweep {stem}, run {i} of {len(grid)}: {run_label(overrides)}", flush=True)
        keras.backend.clear_session()  # each run starts as in a fresh process: same layer names, no leftovers
        try:
            records.append(train_run(config.replace(**overrides, run_name=paths.name), data, paths=paths))
        except Exception as e:  # noqa: BLE001 - one failed run (diverged, out of memory) must not end the sweep
            print(f"error: {e if isinstance(e, UserError) else error_text(e)}", file=sys.stderr)
            records.append(None)

    completed = [r for r in records if r and r["status"] == "completed"]
    histories = {r["run"]: read_history(r["files"]["history"]) for r in completed}
    title = f"Sweep {stem}: " + ", ".join(f"{key} = {', '.join(map(str, values))}"
                                          for key, values in _axes(grid).items())
    figure = history_dir / f"{stem}-compare.png"
    if histories:
        write_file(figure, figure_png(plot_histories(histories, title=title, validation_only=True)), new=True)
    rows = results_rows(grid, records)
    table = markdown_table(rows)
    write_file(history_dir / f"{stem}-results.csv", csv_table(rows).encode(), new=True)
    write_file(history_dir / f"{stem}-results.md", f"# {title}\n\n{table}".encode())

    print(f"\n{title}\n{table}")
    print(f"Wrote {history_dir / f'{stem}-results.md'}, {history_dir / f'{stem}-results.csv'}"
          + (f" and {figure}" if histories else ""))
    if histories:
        pickles = " ".join(shlex.quote(r["files"]["history"]) for r in completed)
        print(f"The same figure from the pickles: python graph_history.py {pickles} --validation-only "
              f"--title {shlex.quote(title)} --out {shlex.quote(str(figure))}")
    return 0 if len(completed) == len(grid) else 1


def _axes(grid):
    """{hyperparameter: its values in order}, recovered from the grid."""
    axes = {}
    for overrides in grid:
        for key, value in overrides.items():
            axes.setdefault(key, [])
            if value not in axes[key]:
                axes[key].append(value)
    return axes
