"""fmnist/ship/serve.py: `serve` answers TensorFlow Serving's REST API and image uploads for a really trained
model, batches concurrent requests into one runtime call, survives every kind of bad input, finishes what is in
flight on SIGTERM, and its page works in a real headless Chromium."""

import http.client
import json
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from conftest import PNG_MAGIC, ROOT, _script_env, assert_clean_error, run_script

from fmnist import CLASS_NAMES

pytestmark = pytest.mark.slow  # every test here trains a model or starts a server
CHROMIUM = Path("/usr/bin/chromium")  # Debian's package, which CI installs


@pytest.fixture(scope="module")
def onnx_model(fast_run, tmp_path_factory):
    """The trained fast model as an ONNX file, exported as `export` does (a float32 copy)."""
    from fmnist.evaluation import float32_copy, load_model

    model, _ = fast_run
    path = tmp_path_factory.mktemp("serve") / "fast.onnx"
    copy = float32_copy(load_model(model))
    copy(np.zeros((1, *copy.input_shape[1:]), "float32"))
    copy.export(str(path), format="onnx", verbose=False)
    return path


@pytest.fixture(scope="module")
def test_set():
    from fmnist.data import load_fashion_mnist

    data = load_fashion_mnist()
    return data.x_test, data.y_test


@contextmanager
def served(model, *args):
    """`fashion_mnist.py serve MODEL --port 0` in a subprocess; yields (process, port, its first line)."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "fashion_mnist.py"), "serve", str(model), "--port", "0",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_script_env(),
                            cwd=ROOT)
    try:
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line, line + proc.stdout.read()[-3000:]
        yield proc, int(line.split("http://127.0.0.1:")[1].split("/")[0]), line
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def server(onnx_model):
    with served(onnx_model, "--read-timeout", "1") as (proc, port, line):
        yield port, line


def call(port, method, path, body=None, headers=None):
    """(status, JSON answer) of one request on a fresh connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(method, path, body, headers or {})
    response = connection.getresponse()
    answer = response.read()
    connection.close()
    return response.status, json.loads(answer)


def predict(port, images):
    return call(port, "POST", "/v1/models/fast:predict", json.dumps({"instances": np.asarray(images).tolist()}))


def png(image):
    from PIL import Image

    buffer = BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def product_photo(image):
    """A dataset image as a shop would photograph it: dark on white, 10 times the size, in RGB."""
    from PIL import Image

    big = Image.fromarray(255 - image).resize((280, 280), Image.Resampling.BICUBIC).convert("RGB")
    buffer = BytesIO()
    big.save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def test_tf_serving_api_status_metadata_and_predict_in_both_formats(server, onnx_model, test_set):
    from fmnist.ship.runtimes import open_model

    port, line = server
    assert "(onnx)" in line and "TensorFlow not loaded" in line and "batching within 2 ms" in line
    ok = {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                    "status": {"error_code": "OK", "error_message": ""}}]}
    assert call(port, "GET", "/v1/models/fast") == (200, ok)
    assert call(port, "GET", "/v1/models/fast/versions/1") == (200, ok)
    status, metadata = call(port, "GET", "/v1/models/fast/metadata")
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert status == 200 and metadata["model_spec"] == {"name": "fast", "signature_name": "", "version": "1"}
    (input_name, spec), = signature["inputs"].items()
    assert [d["size"] for d in spec["tensor_shape"]["dim"]][1:3] == ["28", "28"] and spec["dtype"] == "DT_FLOAT"

    images = test_set[0][:5]
    expected = open_model(onnx_model).probabilities(images)
    status, answer = predict(port, images)
    assert status == 200 and list(answer) == ["predictions"]
    np.testing.assert_allclose(answer["predictions"], expected, atol=1e-5)
    columnar = [{"inputs": images.tolist()}, {"inputs": {input_name: images[..., None].tolist()}}]
    for body in columnar:
        status, answer = call(port, "POST", "/v1/models/fast/versions/1:predict", json.dumps(body))
        assert status == 200 and list(answer) == ["outputs"]
        np.testing.assert_allclose(answer["outputs"], expected, atol=1e-5)
    named = {"signature_name": "serving_default", "instances": [{input_name: image.tolist()} for image in images]}
    status, answer = call(port, "POST", "/v1/models/fast:predict", json.dumps(named))
    np.testing.assert_allclose(answer["predictions"], expected, atol=1e-5)

    assert call(port, "GET", "/v1/models/other") == (404, {"error": "Servable not found for request: Latest(other)"})
    assert call(port, "GET", "/v1/models/fast/versions/2")[0] == 404
    status, answer = call(port, "POST", "/v1/models/fast:predict", json.dumps({**named, "signature_name": "x"}))
    assert status == 400 and "signature" in answer["error"]


def test_an_uploaded_photo_gets_the_top_3_the_flag_and_the_image_the_model_saw(server, onnx_model, test_set):
    from fmnist.ship.runtimes import open_model

    port, _ = server
    images, _ = test_set
    probabilities = open_model(onnx_model).probabilities(images[:200])
    confident = int(np.flatnonzero(probabilities.max(1) > 0.95)[0])
    status, answer = call(port, "POST", "/v1/models/fast:classify-image", product_photo(images[confident]),
                          {"Content-Type": "image/jpeg"})
    assert status == 200, answer
    assert answer["top"][0]["class"] == CLASS_NAMES[probabilities[confident].argmax()]
    assert len(answer["top"]) == 3 and answer["top"][0]["probability"] >= answer["top"][1]["probability"]
    assert np.asarray(answer["image"]).shape == (28, 28) and not answer["not_a_garment"]
    assert np.abs(np.asarray(answer["image"]) - images[confident].astype(int)).mean() < 25  # the same garment
    assert "heat_map" not in answer  # an ONNX file has no gradients to explain with

    status, blank = call(port, "POST", "/v1/models/fast:classify-image", png(np.full((60, 40), 255)))
    assert status == 200 and blank["not_a_garment"] and blank["ood_score"] > 1 and len(blank["top"]) == 3

    status, answer = call(port, "POST", "/v1/models/fast:classify-test-image")
    assert status == 200 and answer["label"] in CLASS_NAMES
    assert np.array_equal(answer["image"], images[answer["test_index"]])


def png_bomb(side=8000):
    """A 65 KB PNG that decodes to side x side pixels (64 MB): over predict's limit of 40 megapixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return PNG_MAGIC + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes((side + 1) * side), 9)) + \
        chunk(b"IEND", b"")


PREDICT, IMAGE = "/v1/models/fast:predict", "/v1/models/fast:classify-image"
ZEROS = [[0] * 28] * 28
BAD_INPUTS = {  # case: (path, body, status, a fragment of the error)
    "malformed JSON": (PREDICT, b'{"instances": [[1', 400, "malformed JSON"),
    "not an object": (PREDICT, b"[1, 2]", 400, "JSON object"),
    "neither instances nor inputs": (PREDICT, b"{}", 400, "exactly one of"),
    "wrong shape": (PREDICT, json.dumps({"instances": [[[0] * 27] * 28]}), 400, "28x28"),
    "ragged images": (PREDICT, json.dumps({"instances": [ZEROS, ZEROS[:27]]}), 400, "same shape"),
    "strings": (PREDICT, json.dumps({"instances": [[["a"] * 28] * 28]}), 400, "28x28 numbers"),
    "NaN": (PREDICT, '{"instances": [NaN]}', 400, "NaN is not a number"),
    "overflowing number": (PREDICT, json.dumps({"instances": [[[7] * 28] * 28]}).replace("7", "1e999", 1), 400,
                           "infinite"),
    "over 255": (PREDICT, json.dumps({"instances": [[[256] * 28] * 28]}), 400, "0-255"),
    "negative": (PREDICT, json.dumps({"instances": [[[-1] * 28] * 28]}), 400, "0-255"),
    "too many instances": (PREDICT, json.dumps({"instances": [ZEROS] * 257}), 400, "over the limit of 256"),
    "nested too deep": (PREDICT, b"[" * 100_000, 400, "malformed JSON"),
    "not an image": (IMAGE, b"%PDF-1.4 not a picture", 400, "not an image"),
    "no image": (IMAGE, b"", 400, "no image"),
    "truncated image": (IMAGE, png(np.zeros((50, 50)))[:60], 400, "cannot read"),
    "decompression bomb": (IMAGE, png_bomb(), 400, "megapixels"),
}


def assert_still_serving(port, test_set):
    status, answer = predict(port, test_set[0][:1])
    assert status == 200 and np.isclose(sum(answer["predictions"][0]), 1, atol=1e-3)


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_gets_a_one_line_json_error_and_the_next_request_is_served(server, test_set, case):
    port, _ = server
    path, body, expected, fragment = BAD_INPUTS[case]
    status, answer = call(port, "POST", path, body)
    assert status == expected and list(answer) == ["error"]
    assert fragment in answer["error"] and "\n" not in answer["error"]
    assert_still_serving(port, test_set)


def read_answer(connection):
    """(status, JSON body) of the HTTP answer arriving on a raw socket."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += connection.recv(65536)
    head, body = answer.split(b"\r\n\r\n", 1)
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += connection.recv(65536)
    return int(head.split(b" ")[1]), json.loads(body)


def raw_exchange(port, head, body=b""):
    """Send `head` and `body` on a raw connection (maybe less than the head announces), and read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(head + body)
        return read_answer(connection)


def test_a_body_over_the_limit_is_refused_said_or_sent(server, test_set):
    port, _ = server
    head = b"POST /v1/models/fast:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 11000000\r\n\r\n"
    status, answer = raw_exchange(port, head)
    assert status == 413 and "over the limit of 10 MB" in answer["error"]
    assert_still_serving(port, test_set)
    chunks = (b"[" + b"0," * 2**20 for _ in range(6))  # 12 MB sent in chunks, with no length said beforehand
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("POST", "/v1/models/fast:predict", chunks, encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 413 and "over the limit" in json.loads(response.read())["error"]
    assert_still_serving(port, test_set)


def test_a_client_that_sends_slowly_gets_a_408(server, test_set):
    port, _ = server  # started with --read-timeout 1
    started = time.monotonic()
    status, answer = raw_exchange(port, b"POST /v1/models/fast:predict HTTP/1.1\r\nHost: x\r\nContent-Length: "
                                        b"1000\r\n\r\n", b'{"instances": ')
    assert status == 408 and "did not arrive within 1 s" in answer["error"]
    assert 0.9 < time.monotonic() - started < 10
    assert_still_serving(port, test_set)


def test_a_client_that_sends_its_headers_slowly_gets_a_408(server, test_set):
    port, _ = server
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        for byte in b"POST /v1/models/fast:predict HTTP/1.1\r\nHost: x\r\n":  # a slowloris: never done
            connection.sendall(bytes([byte]))
            time.sleep(0.01)
        started = time.monotonic()
        status, answer = read_answer(connection)
    assert status == 408 and "headers did not arrive within 1 s" in answer["error"]
    assert time.monotonic() - started < 5
    assert_still_serving(port, test_set)


@contextmanager
def in_process(app):
    """The app on a real uvicorn in a thread of this process, on a free loopback port (to read its counters)."""
    import uvicorn

    from fmnist.ship.serve import listen

    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(30)


def concurrently(port, images):
    """One :predict request per image, all sent at once from threads; their answers in order."""
    answers = [None] * len(images)
    barrier = threading.Barrier(len(images))

    def send(i):
        barrier.wait()
        answers[i] = predict(port, images[i:i + 1])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(images))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return answers


@pytest.fixture(scope="module")
def onnx_runner(onnx_model):
    from fmnist.ship.ood import calibrate
    from fmnist.ship.runtimes import open_model

    runner = open_model(onnx_model)
    return runner, calibrate(runner)


def test_concurrent_requests_share_one_runtime_call_and_each_gets_its_own_answer(onnx_runner, test_set):
    from fmnist.ship.serve import create_app

    runner, calibration = onnx_runner
    images = test_set[0][:24]
    expected = runner.probabilities(images)
    for max_batch, most_calls in ((64, 2), (8, 4)):  # a whole window for each batch: the requests surely meet in it
        app = create_app(runner, calibration, "fast", window=1.0, max_batch=max_batch, eager=False)
        with in_process(app) as port:
            answers = concurrently(port, images)
        batcher = app.state.model.batcher
        assert all(status == 200 for status, _ in answers)
        np.testing.assert_allclose([answer["predictions"][0] for _, answer in answers], expected, atol=1e-5)
        assert batcher.images == 24 and 24 / max_batch <= batcher.calls <= most_calls, batcher.calls


def test_a_request_alone_does_not_wait_for_the_window(onnx_runner, test_set):
    from fmnist.ship.serve import create_app

    runner, calibration = onnx_runner
    app = create_app(runner, calibration, "fast", window=2.0)  # eager, as served
    with in_process(app) as port:
        predict(port, test_set[0][:1])  # the first request warms the runtime up
        started = time.monotonic()
        status, _ = predict(port, test_set[0][1:2])
    assert status == 200 and time.monotonic() - started < 1.0


def test_a_keras_model_adds_the_heat_map(fast_run, onnx_model, test_set):
    from fmnist.ship.ood import calibrate
    from fmnist.ship.runtimes import open_model
    from fmnist.ship.serve import create_app

    model, _ = fast_run
    app = create_app(open_model(model), calibrate(open_model(onnx_model)), "fast", test_set, seed=0)
    with in_process(app) as port:
        status, answer = call(port, "POST", "/v1/models/fast:classify-test-image")
    heat = np.asarray(answer["heat_map"])
    assert status == 200 and heat.shape == (28, 28) and heat.min() >= 0 and heat.max() == 1


def test_sigterm_finishes_the_request_in_flight_then_exits(onnx_model, test_set):
    with served(onnx_model) as (proc, port, _):
        body = json.dumps({"instances": test_set[0][:1].tolist()}).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
            connection.sendall(b"POST /v1/models/fast:predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                               % (len(body), body[:100]))
            time.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert proc.poll() is None  # still waiting for the rest of the request in flight
            connection.sendall(body[100:])
            status, answer = read_answer(connection)
        assert status == 200 and np.isclose(sum(answer["predictions"][0]), 1, atol=1e-3)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM  # the project's exit code for SIGTERM (fmnist.errors)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=5)


def test_serve_refuses_a_missing_model_a_bad_port_and_a_port_in_use(tmp_path):
    assert_clean_error(run_script("fashion_mnist.py", "serve", tmp_path / "none.onnx"), 1, "none.onnx: file not found")
    assert_clean_error(run_script("fashion_mnist.py", "serve", "m.onnx", "--port", "70000"), 2, "port number")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = run_script("fashion_mnist.py", "serve", "m.onnx", "--port", taken.getsockname()[1])
        assert_clean_error(proc, 1, "cannot listen on 127.0.0.1", "choose another --port")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)")
def test_the_page_in_headless_chromium_classifies_a_photo_and_a_random_test_image(server, test_set, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    port, _ = server
    photo = tmp_path / "shoe.jpg"
    photo.write_bytes(product_photo(test_set[0][0]))  # an ankle boot
    blank = tmp_path / "blank.png"
    blank.write_bytes(png(np.full((50, 50), 255)))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        page.set_input_files("#file", str(photo))
        bars = page.locator("#bars .bar")
        expect(bars).to_have_count(3)
        assert any(name in bars.first.inner_text() for name in CLASS_NAMES) and "%" in bars.first.inner_text()
        expect(page.locator("#seen")).to_be_visible()
        expect(page.locator("#warning")).to_be_hidden()
        page.click("#random")
        expect(page.locator("#label")).to_contain_text("labelled")
        expect(bars).to_have_count(3)
        page.set_input_files("#file", str(blank))
        expect(page.locator("#warning")).to_be_visible()
        expect(bars).to_have_count(3)  # the prediction is still shown beside the warning
        browser.close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)")
def test_the_page_shows_the_server_s_error_for_a_file_that_is_not_an_image(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    port, _ = server
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        page.set_input_files("#file", str(text))
        expect(page.locator("#error")).to_contain_text("not an image")
        browser.close()
