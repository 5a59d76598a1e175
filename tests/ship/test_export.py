"""`export`: the files it writes run in their own runtimes and agree with Keras; `predict` runs them; the README's
snippet runs them without this project; bad input is refused cleanly, leaving nothing behind."""

import dataclasses
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, assert_clean_error, run_script

from fmnist import CLASS_NAMES

pytestmark = pytest.mark.slow
FILES = ("fast.savedmodel", "fast.onnx", "fast.tflite", "fast.int8.tflite")


@pytest.fixture(scope="module")
def exported(fast_run, tmp_path_factory):
    """`export --int8` of the trained fast model, into a folder of its own."""
    model, _ = fast_run
    out = tmp_path_factory.mktemp("exported")
    proc = run_script("fashion_mnist.py", "export", model, "--int8", "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_export_writes_every_format_with_a_card_and_checks_it(exported, fast_run):
    out, proc = exported
    model, _ = fast_run
    assert sorted(p.name for p in out.iterdir()) == sorted([*FILES, *(f"{f}{s}" for f in FILES for s in (".json",
                                                                                                         ".md"))])
    cards = {f: json.loads((out / f"{f}.json").read_text()) for f in FILES}
    for name, card in cards.items():
        assert card["file"] == name
        assert card["class_names"] == list(CLASS_NAMES)
        assert card["input"]["shape"] == [None, 28, 28, 1] and card["input"]["dtype"] == "float32"
        assert card["input"]["range"] == [0, 255] and card["output"]["shape"] == [None, 10]
        assert card["command"] == f"python fashion_mnist.py export {model} --int8 --out {out}"
        assert card["test_images"] == 10_000 and 0.6 < card["test_accuracy"] < 0.95
        assert card["test"]["accuracy"] == card["test_accuracy"] and len(card["test"]["per_class"]) == 10
        assert not Path(card["keras_model"]).is_absolute() and (out / card["keras_model"]).resolve() == model
        assert 0.03 <= card["ood"]["validation_flagged"] <= 0.07 and 0 < card["ood"]["threshold"] < 1
        provenance = card["provenance"]
        assert provenance["packages"]["tensorflow"] and provenance["packages"]["onnxruntime"]
        assert provenance["cpu"]["flags"] and provenance["commit"]  # the suite runs in a git checkout
        assert provenance["trained_with"]["command"].startswith("python fashion_mnist.py --model fast")
        markdown = (out / f"{name}.md").read_text()
        assert markdown.startswith("---\nlibrary_name: keras\n") and f"# {name}: " in markdown
        assert "**a subset: 6,000 of the training images** (`--limit 6000`)" in markdown
        assert f"accuracy **{card['test_accuracy']:.2%}**" in markdown and "| Shirt |" in markdown
        assert str(out) not in markdown.replace(card["command"], "")  # no path of this machine but the command
        floor = 0.95 if "int8" in name else 0.999
        assert card["agreement_with_keras"] >= floor
        # The table printed the same agreement and accuracy for this file.
        row = next(line for line in proc.stdout.splitlines() if f" {name} " in line)
        assert f"{card['agreement_with_keras']:.2%}" in row and f"{card['test_accuracy']:.2%}" in row
    float_accuracy = cards["fast.onnx"]["keras_test_accuracy"]
    for name in ("fast.savedmodel", "fast.onnx", "fast.tflite"):
        assert abs(cards[name]["test_accuracy"] - float_accuracy) <= 0.001
        assert cards[name]["max_probability_difference"] < 1e-4
    int8 = cards["fast.int8.tflite"]["int8"]
    assert int8["size_ratio"] == pytest.approx((out / "fast.int8.tflite").stat().st_size
                                               / (out / "fast.tflite").stat().st_size)
    assert int8["size_ratio"] <= 0.30  # the dense layers' weights dominate, and shrink 4x
    assert int8["accuracy_points_lost"] <= 1.0
    assert re.search(r"int8: \d+\.\d% of the float file's size", proc.stdout)


def test_exported_onnx_and_tflite_score_what_their_cards_say(exported):
    """Run the files with the runtimes directly (not through fmnist.ship.runtimes) on the test set."""
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    from fmnist.data import load_fashion_mnist

    out, _ = exported
    data = load_fashion_mnist()
    x = data.x_test[..., None].astype("float32")
    card = json.loads((out / "fast.onnx.json").read_text())
    session = ort.InferenceSession(str(out / "fast.onnx"), providers=["CPUExecutionProvider"])
    onnx = session.run(None, {card["input"]["name"]: x})[0]
    assert (onnx.argmax(1) == data.y_test).mean() == card["test_accuracy"]
    for name in ("fast.tflite", "fast.int8.tflite"):
        card = json.loads((out / f"{name}.json").read_text())
        runner = Interpreter(str(out / name)).get_signature_runner()
        # The whole test set, as the card scored it (a subset's accuracy strays from the card's by sampling alone),
        # in slices that keep the interpreter's activations small; another batch size may tip a near-tie.
        litert = np.concatenate([runner(**{card["input"]["name"]: x[i:i + 2000]})[card["output"]["name"]]
                                 for i in range(0, len(x), 2000)])
        assert abs((litert.argmax(1) == data.y_test).mean() - card["test_accuracy"]) <= 0.001


def test_predict_gives_the_same_answer_from_each_format(exported, fast_run, tmp_path):
    from PIL import Image

    from fmnist.data import load_fashion_mnist

    out, _ = exported
    model, _ = fast_run
    images = load_fashion_mnist().x_test[:4]
    files = []
    for i, image in enumerate(images):
        files.append(tmp_path / f"test{i}.png")
        Image.fromarray(image).save(files[-1])
    answers = {}
    for path in (model, out / "fast.onnx", out / "fast.tflite", out / "fast.int8.tflite"):
        proc = run_script("fashion_mnist.py", "predict", path, *files, "--json")
        assert proc.returncode == 0, proc.stderr[-2000:]
        answers[path.suffix if "int8" not in path.name else "int8"] = json.loads(proc.stdout)
    keras = answers.pop(".keras")
    for kind, answer in answers.items():
        tolerance = 0.05 if kind == "int8" else 0.01  # Keras may compute in bfloat16 (`auto`), the files in float32
        for mine, theirs in zip(answer, keras, strict=True):
            assert mine["file"] == theirs["file"]
            keras_top = theirs["top"][0]["probability"]
            keras_rates = {top["class"]: top["probability"] for top in theirs["top"]}
            # The file's top class is Keras's, or one Keras rates within the tolerance of it: a near tie may go either
            # way (seen with int8: Keras 0.4225 Ankle boot, 0.4220 Sneaker; int8 0.4219 for both, Sneaker first).
            assert keras_rates.get(mine["top"][0]["class"], 0) == pytest.approx(keras_top, abs=tolerance)
            assert mine["top"][0]["probability"] == pytest.approx(keras_top, abs=tolerance)


def readme_snippets():
    """The Python blocks of the README's 'Export and serve' section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Export and serve", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


# The README gives the ONNX snippet in full and the .tflite way in one line: the same snippet through this call.
LITERT_WAY = "ai_edge_litert.interpreter.Interpreter(path).get_signature_runner()"
LITERT_LINES = (  # (in the ONNX snippet, in its LiteRT twin), applied in order
    ("import onnxruntime as ort", "from ai_edge_litert.interpreter import Interpreter"),
    ("models/RUN.onnx", "models/RUN.tflite"),
    ('session = ort.InferenceSession("models/RUN.tflite")',
     'runner = Interpreter("models/RUN.tflite").get_signature_runner()'),
    ('session.run(None, {card["input"]["name"]: images})[0]',
     'runner(**{card["input"]["name"]: images})[card["output"]["name"]]'),
)


@pytest.mark.parametrize("runtime", ["onnxruntime", "ai_edge_litert"])
def test_the_readme_snippet_runs_the_exported_file(exported, runtime, tmp_path):
    """The snippet as printed, with the README's example path replaced by the exported file."""
    import subprocess

    out, _ = exported
    snippet = next(s for s in readme_snippets() if "import onnxruntime" in s)
    if runtime == "ai_edge_litert":
        assert LITERT_WAY in (ROOT / "README.md").read_text()
        for onnx_line, litert_line in LITERT_LINES:
            assert onnx_line in snippet
            snippet = snippet.replace(onnx_line, litert_line)
    assert len(snippet.strip().splitlines()) <= 12 and "fmnist" not in snippet
    script = tmp_path / "snippet.py"
    script.write_text(snippet.replace("models/RUN", str(out / "fast")))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = proc.stdout.strip().splitlines()[-1]
    import onnxruntime as ort

    from fmnist.data import load_fashion_mnist

    session = ort.InferenceSession(str(out / "fast.onnx"), providers=["CPUExecutionProvider"])
    first = load_fashion_mnist().x_test[:5, ..., None].astype("float32")
    expected = [CLASS_NAMES[i] for i in session.run(None, {"input_layer": first})[0].argmax(axis=1)]
    assert printed == str(expected)


def test_export_never_overwrites_and_removes_a_file_that_fails_its_check(exported, fast_run, monkeypatch, capsys):
    from fmnist.errors import UserError
    from fmnist.ship import export as export_module

    out, _ = exported
    model, _ = fast_run
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()}
    assert export_module.export_model(model, ("onnx",), False, out) == 0  # a second export: a free name
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name in before} == before
    assert all((out / f"fast-2.onnx{s}").is_file() for s in ("", ".json", ".md"))

    def disagreeing(path, reference, images, labels):  # a runtime that disagrees with Keras on 1 image in 100
        check, runner = real_check(path, reference, images, labels)
        return dataclasses.replace(check, agreement=0.99), runner

    real_check = export_module.check_export
    monkeypatch.setattr(export_module, "check_export", disagreeing)
    listing = sorted(p.name for p in out.iterdir())
    with pytest.raises(UserError, match=r"fast-3\.onnx: .* agrees with the Keras model on only 99\.00% .*removed"):
        export_module.export_model(model, ("onnx",), False, out)
    assert sorted(p.name for p in out.iterdir()) == listing  # no fast-3.onnx, and no partial file either


@pytest.fixture()
def model_copy(fast_run, tmp_path):
    model, _ = fast_run
    return Path(shutil.copy(model, tmp_path / "fast.keras"))


def test_export_refuses_bad_input_with_one_line(model_copy, tmp_path):
    folder = model_copy.parent
    text = folder / "notes.keras"
    text.write_text("not a model")
    corrupt = folder / "corrupt.keras"
    corrupt.write_bytes(model_copy.read_bytes()[:5000])
    blocker = folder / "a-file"
    blocker.write_text("")
    cases = [
        (["export", text], 1, "notes.keras: not a loadable .keras model"),
        (["export", corrupt], 1, "corrupt.keras: not a loadable .keras model"),
        (["export", folder / "photo.png"], 1, "photo.png: export takes a .keras model"),
        (["export", folder / "missing.keras"], 1, "missing.keras: file not found"),
        (["export", model_copy, "--out", blocker / "sub"], 1, "cannot write to"),
        (["export", corrupt, "--out", folder / "made"], 1, "corrupt.keras: not a loadable"),  # "made" goes too
        (["export", model_copy, "--format", "coreml"], 2, "invalid choice: 'coreml'"),
    ]
    listing = sorted(p.name for p in folder.iterdir())
    for args, code, message in cases:
        assert_clean_error(run_script("fashion_mnist.py", *args), code, message)
    assert sorted(p.name for p in folder.iterdir()) == listing


@pytest.mark.parametrize("module, fmt, command", [
    ("tf2onnx", "onnx", "pip install 'tf2onnx"),
    ("onnxruntime", "onnx", "pip install 'onnxruntime"),
    ("ai_edge_litert", "litert", "pip install 'ai-edge-litert"),
])
def test_a_missing_runtime_is_named_with_its_install_command(model_copy, module, fmt, command):
    """The command run with `module` made unimportable, as where it is not installed."""
    import subprocess

    from conftest import _script_env

    code = (f"import runpy, sys; sys.modules[{module!r}] = None; "
            f"sys.argv = ['fashion_mnist.py', 'export', {str(model_copy)!r}, '--format', {fmt!r}]; "
            "runpy.run_path('fashion_mnist.py', run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=_script_env(),
                          timeout=120)
    assert_clean_error(proc, 1, f"{module} is not installed; run: {command}")
    assert sorted(p.name for p in model_copy.parent.iterdir()) == ["fast.keras"]


def test_predict_refuses_explain_for_an_exported_file_and_unknown_files(exported, tmp_path):
    out, _ = exported
    image = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(np.zeros((28, 28), np.uint8)).save(image)
    assert_clean_error(run_script("fashion_mnist.py", "predict", out / "fast.onnx", image, "--explain"), 1,
                       "--explain needs the .keras model")
    weird = tmp_path / "model.bin"
    weird.write_bytes(b"\0" * 10)
    assert_clean_error(run_script("fashion_mnist.py", "predict", weird, image), 1, "not a model file")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"garbage")
    assert_clean_error(run_script("fashion_mnist.py", "predict", broken, image), 1, "not a loadable ONNX model")


@pytest.mark.parametrize("event", ["the check fails", "a card appears", "a file appears", "SIGTERM in the block",
                                   "SIGTERM between the renames"])
def test_an_exported_file_and_its_cards_appear_together_or_not_at_all(tmp_path, monkeypatch, event):
    import os
    import signal

    from fmnist.errors import Terminated, UserError
    from fmnist.run import files
    from fmnist.ship.export import _exporting

    def terminated(signum, frame):  # as fmnist.errors.run_guarded has it
        raise Terminated

    path, card = tmp_path / "m.onnx", tmp_path / "m.onnx.json"
    previous = signal.signal(signal.SIGTERM, terminated)
    if event == "SIGTERM between the renames":
        real_link = os.link

        def link_then_signal(source, target):
            real_link(source, target)
            os.kill(os.getpid(), signal.SIGTERM)

        monkeypatch.setattr(files.os, "link", link_then_signal)
    try:
        with pytest.raises((UserError, Terminated)):
            with _exporting(path) as (staging, (card_staging, markdown_staging)):
                staging.write_bytes(b"model")
                card_staging.write_bytes(b"{}")
                markdown_staging.write_text("# m.onnx")
                if event == "the check fails":
                    raise UserError("its check failed")
                if event == "a card appears":
                    card.write_text("the user's")
                if event == "a file appears":
                    path.write_text("the user's")
                if event == "SIGTERM in the block":
                    os.kill(os.getpid(), signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
    left = {p.name: p.read_text() for p in tmp_path.iterdir()}
    expected = {"a card appears": {"m.onnx.json": "the user's"}, "a file appears": {"m.onnx": "the user's"},
                "SIGTERM between the renames": {"m.onnx": "model", "m.onnx.json": "{}", "m.onnx.md": "# m.onnx"}}
    assert left == expected.get(event, {})  # and no temporary file: both or neither, and the user's untouched


def test_sigterm_during_the_int8_conversion_stops_in_one_line_leaving_no_partial_file(model_copy, tmp_path):
    import os
    import signal
    import subprocess
    import time

    from conftest import _script_env

    out, system_tmp = tmp_path / "out", tmp_path / "system-tmp"
    system_tmp.mkdir()
    proc = subprocess.Popen([sys.executable, str(ROOT / "fashion_mnist.py"), "export", model_copy, "--format",
                             "litert", "--int8", "--out", out], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env=dict(_script_env(), TMPDIR=str(system_tmp)))
    deadline = time.monotonic() + 300
    while not (out.is_dir() and any(p.name.startswith(".fast.int8.tflite.") for p in out.iterdir())):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert_clean_error(subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr), 143, "stopped by SIGTERM")
    assert sorted(p.name for p in out.iterdir()) == ["fast.tflite", "fast.tflite.json", "fast.tflite.md"]  # done
    assert list(system_tmp.iterdir()) == []


def test_two_exports_at_once_take_their_names_at_the_start(model_copy, tmp_path):
    import time

    from conftest import start_script

    out = tmp_path / "out"
    procs = [start_script("fashion_mnist.py", "export", model_copy, "--format", "onnx", "--out", out,
                          log=tmp_path / f"{i}.log") for i in range(2)]
    deadline, both_claimed = time.monotonic() + 300, False
    while not both_claimed and all(p.poll() is None for p in procs) and time.monotonic() < deadline:
        both_claimed = (out / "fast.exporting").exists() and (out / "fast-2.exporting").exists()
        time.sleep(0.02)
    assert [p.wait(timeout=600) for p in procs] == [0, 0], [(tmp_path / f"{i}.log").read_text()[-2000:] for i in (0, 1)]
    assert both_claimed  # each held its name while it worked
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{stem}.onnx{s}" for stem in ("fast", "fast-2")
                                                           for s in ("", ".json", ".md"))
