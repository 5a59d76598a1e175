"""Regenerate every figure in docs/ from one run of the current code, and the numbers the README quotes.

    python docs/make_figures.py             # the fast run (about 3-6 minutes on 2 cores), then the batch-size sweep
    python docs/make_figures.py --skip-sweep  # only the figures of the fast run
    python docs/make_figures.py --only-sweep  # only docs/batch-size.png
    python docs/make_figures.py --out runs/   # and keep the runs' models and histories in runs/

The figures of a run come from `python fashion_mnist.py --model fast` (seed 1337): the confusion matrix, the most
confident mistakes, the feature maps, the Grad-CAM maps of the most confused pair, the training curves, what
TensorBoard shows at the first and the last epoch, `predict --explain` on docs/t-shirt.png, and screenshots of
TensorBoard and of the `serve` page with that photo (where Playwright and Debian's chromium are installed). The
batch-size figure comes from SWEEP below. Every number goes to docs/figures.json, which the README's numbers are checked
against (tests/test_figures.py).
"""

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

RUN = ["--model", "fast", "--run-name", "docs-fast"]
# The batch-size comparison at learning rate 0.01: the cnn on a fifth of the training images, so that the three
# runs take minutes on 2 cores (the whole set takes about an hour there).
SWEEP = ["--sweep", "batch_size=64,256,512", "--learning-rate", "0.01", "--limit", "10000", "--epochs", "6",
         "--run-name", "docs-batch"]


def train(args, out):
    command = [sys.executable, str(ROOT / "fashion_mnist.py"), *args, "--out", str(out)]
    print("$", " ".join(command[1:]), flush=True)
    started = time.monotonic()
    subprocess.run(command, check=True, cwd=ROOT)
    return time.monotonic() - started


def write_figure(fig, name, dpi=None):
    from fmnist.figures import FIGURE_DPI, figure_png

    (DOCS / name).write_bytes(figure_png(fig, dpi=dpi or FIGURE_DPI))
    print(f"Wrote docs/{name}")


def tensorboard_images(logdir, tag="validation/predictions"):
    """{step: PNG bytes} of one image tag, as TensorBoard reads it from the run's event files."""
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    events = event_accumulator.EventAccumulator(str(logdir), size_guidance={event_accumulator.TENSORS: 0})
    events.Reload()
    return {e.step: tensor_util.make_ndarray(e.tensor_proto)[2] for e in events.Tensors(tag)}


def plot_tensorboard_images(pngs):
    """The first and the last epoch's picture one above the other, pixel for pixel as TensorBoard shows them
    (side by side, a README would shrink their text to a few pixels)."""
    import io

    from matplotlib.figure import Figure
    from PIL import Image

    first, last = min(pngs), max(pngs)
    images = [Image.open(io.BytesIO(pngs[step])) for step in (first, last)]
    width, height = max(i.width for i in images), sum(i.height for i in images)
    fig = Figure(figsize=(width / 100, height / 100 + 0.6), dpi=100, layout="constrained")
    for ax, image in zip(fig.subplots(2, 1), images, strict=True):
        ax.imshow(image)
        ax.axis("off")
    fig.suptitle("TensorBoard's IMAGES tab: the same validation images after the first\nand the last epoch "
                 "(green right, red wrong)", fontsize=11)
    return fig


CHROMIUM = Path("/usr/bin/chromium")  # Debian's chromium; Playwright never downloads its own browser here


def screenshot_tensorboard(logdir, path, tag="validation/predictions"):
    """A real screenshot of TensorBoard's IMAGES tab on `logdir`, taken by Playwright in headless Chromium."""

    def show(page):
        page.get_by_label("Filter tags").fill(tag)  # one card: the predictions at every epoch
        page.get_by_text("Show actual image size").click()  # pixel for pixel, so that the captions read
        page.wait_for_selector("img", timeout=60_000)
        page.wait_for_timeout(3000)  # the images load after their cards

    return screenshot([sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1"],
                      "data/logdir", "#images", show, path, viewport={"width": 1000, "height": 980})


def screenshot_serve_page(model, photo, path):
    """The page of `serve` for the run's .keras model (so with its heat map), after a photo was chosen."""

    def show(page):
        page.set_input_files("#file", str(photo))
        page.wait_for_selector("#bars .bar", timeout=60_000)
        page.wait_for_timeout(500)

    name = Path(model).stem
    return screenshot([sys.executable, str(ROOT / "fashion_mnist.py"), "serve", str(model)], f"v1/models/{name}",
                      "", show, path, viewport={"width": 900, "height": 640})


def screenshot(command, ready_path, fragment, show, path, *, viewport):
    """Start the server `command` (given --port), wait until `ready_path` answers, open the page at `fragment`,
    let `show` set it up, and save a screenshot to `path`: by Playwright in headless Chromium, skipped with a note
    where either is missing."""
    import socket
    import urllib.request

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print(f"Skipped {path.name}: pip install playwright (and apt-get install chromium)")
        return False
    if not CHROMIUM.exists():
        print(f"Skipped {path.name}: no {CHROMIUM} (apt-get install chromium)")
        return False
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    server = subprocess.Popen([*command, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while True:  # the server answers once it has loaded what it serves
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/{ready_path}", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"{command[1]} did not start") from None
                time.sleep(0.5)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"])
            page = browser.new_page(viewport=viewport)
            page.goto(f"http://127.0.0.1:{port}/{fragment}")
            show(page)
            page.screenshot(path=str(path))
            browser.close()
    finally:
        server.terminate()
        server.wait()
    print(f"Wrote {path}")
    return True


def make_run_figures(out):
    from fmnist.figures import plot_histories
    from fmnist.run.names import REPORT_FIGURES
    from fmnist.run.records import read_history

    seconds = train(RUN, out)
    record = json.loads((out / "history" / "docs-fast.json").read_text())
    for name in REPORT_FIGURES:
        shutil.copyfile(record["figures"][name], DOCS / f"{name}.png")
        print(f"Wrote docs/{name}.png")
    history = read_history(record["files"]["history"])
    write_figure(plot_histories({"fast": history}, title=f"python fashion_mnist.py --model fast: "
                                f"{record['epochs_run']} epochs, test accuracy {record['test']['accuracy']:.2%}"),
                 "fast-history.png")
    write_figure(plot_tensorboard_images(tensorboard_images(Path(record["files"]["tensorboard"]) / "images")),
                 "tensorboard-images.png", dpi=100)  # 100: the event files' pixels one for one
    screenshot_tensorboard(Path(record["files"]["tensorboard"]).parent, DOCS / "tensorboard.png")

    # predict --explain writes beside the photo and never overwrites: explain a copy, then move the figure here.
    photo = out / "t-shirt.png"
    shutil.copyfile(DOCS / "t-shirt.png", photo)
    predicted = subprocess.run([sys.executable, str(ROOT / "fashion_mnist.py"), "predict", record["files"]["model"],
                                str(photo), "--explain", "--json"], check=True, cwd=ROOT, capture_output=True,
                               text=True)
    explained = json.loads(predicted.stdout[predicted.stdout.index("["):])[0]  # the JSON follows any notices
    shutil.move(explained["explained"], DOCS / "t-shirt-explained.png")
    print("Wrote docs/t-shirt-explained.png")
    screenshot_serve_page(record["files"]["model"], DOCS / "t-shirt.png", DOCS / "serve-page.png")

    test = record["test"]
    return {"command": "python fashion_mnist.py --model fast", "run_seconds": round(seconds),
            "train_seconds": round(record["train_seconds"]), "epochs_run": record["epochs_run"],
            "precision": record["precision"], "test_accuracy": round(test["accuracy"], 4),
            "top5_accuracy": round(test["top5_accuracy"], 4),
            "mistakes": round(test["images"] * (1 - test["accuracy"])), "test_images": test["images"],
            "most_confused": test["most_confused"][0],
            "t_shirt": explained["top"]}


def make_sweep_figure(out):
    from fmnist.figures import plot_histories
    from fmnist.run.records import read_history

    seconds = train(SWEEP, out)
    records = [json.loads(path.read_text()) for path in sorted((out / "history").glob("*.json"))]
    runs = sorted((r for r in records if r.get("model") == "cnn"), key=lambda r: r["hyperparameters"]["batch_size"])
    histories = {f"batch {r['hyperparameters']['batch_size']}": read_history(r["files"]["history"]) for r in runs}
    write_figure(plot_histories(histories, title="Batch size 64, 256 and 512 at learning rate 0.01 (the cnn, "
                                "10,000 training images, 6 epochs)"), "batch-size.png")
    return {"command": "python fashion_mnist.py " + " ".join(SWEEP[:-2]), "run_seconds": round(seconds),
            "runs": {r["hyperparameters"]["batch_size"]: {
                "test_accuracy": round(r["test"]["accuracy"], 4), "epochs_run": r["epochs_run"],
                "train_seconds": round(r["train_seconds"]),
                "best_val_accuracy": round(max(r["history"]["val_accuracy"]), 4)} for r in runs}}


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-sweep", action="store_true", help="only the figures of the fast run")
    parser.add_argument("--only-sweep", action="store_true", help="only the batch-size figure")
    parser.add_argument("--out", type=Path, help="keep the runs' files (models, histories) in this folder; by "
                        "default they go to a temporary one, removed at the end")
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    numbers_path = DOCS / "figures.json"
    numbers = json.loads(numbers_path.read_text()) if numbers_path.exists() else {}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    folder = contextlib.nullcontext(args.out) if args.out else tempfile.TemporaryDirectory(prefix="docs-figures-")
    with folder as out:
        if not args.only_sweep:
            numbers["fast"] = {**make_run_figures(Path(out) / "fast"), "commit": commit.stdout.strip()}
        if not args.skip_sweep:
            numbers["batch_size"] = {**make_sweep_figure(Path(out) / "sweep"), "commit": commit.stdout.strip()}
    numbers_path.write_text(json.dumps(numbers, indent=2) + "\n")
    print(f"Wrote docs/figures.json:\n{json.dumps(numbers, indent=2)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
