"""The `serve` command: a model file over HTTP, in TensorFlow Serving's REST API, with a page to try it.

Starlette on uvicorn, the Python ecosystem's standard ASGI pair. Routes (NAME is the model file's stem or --name):

    GET  /                                   the page: choose or drop a photo, or take a random test image
    GET  /v1/models/NAME[/versions/1]        TF Serving's model status
    GET  /v1/models/NAME[/versions/1]/metadata      its signature: input and output names, shapes, dtypes
    POST /v1/models/NAME[/versions/1]:predict       {"instances": [...]} or {"inputs": ...}, pixels 0-255
    POST /v1/models/NAME:classify-image      the raw bytes of a PNG, JPEG, BMP, GIF or WebP: top 3, the
                                             not-a-garment flag, the 28x28 image the model saw, the heat map
                                             for a .keras model
    POST /v1/models/NAME:classify-test-image a random image of the shipped test set, answered the same way

Concurrent requests are batched as TF Serving's batching does: the first request waits at most WINDOW_S for
others, up to MAX_BATCH images, and then all go to the runtime in one call, in a worker thread so the event loop
goes on reading requests. It does not wait when no other request is in flight. Every bad input is a 4xx answer
`{"error": "..."}`; nothing a request sends names or creates a file on the server.
"""

import asyncio
import html
import io
import json
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from fmnist import CLASS_NAMES
from fmnist import IMAGE_SIDE as SIDE
from fmnist.errors import UserError, first_line

WINDOW_S = 0.002  # how long the first request of a batch waits for others: TF Serving's batch_timeout_micros
MAX_BATCH = 64  # images a runtime call takes at most (a request's own images are never split)
MAX_INSTANCES = 256  # images one :predict request may hold
MAX_BODY_BYTES = 10 * 2**20  # a large phone photo, or 256 instances as JSON with room to spare
# One runtime thread: a batch of 64 small images takes a millisecond or two on it, and the HTTP side needs the other
# cores (on 2 cores, ONNX Runtime's spinning pool of 2 threads tripled the p99 latency at 32 clients: 25 -> 76 ms).
THREADS = 1
READ_TIMEOUT_S = 10.0  # the whole body must arrive within this: a client that trickles it holds a connection
PAGE = Path(__file__).with_name("page.html")
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}"
ROUTE = re.compile(r"(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?(?P<rest>/metadata|:[a-z-]+)?")


class ClientError(Exception):
    """A bad request: answered with its HTTP status and `{"error": message}`; the server goes on."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Batcher:
    """Gathers the images of concurrent requests into one runtime call. `await batcher.classify(images)` gives
    (probabilities, flagged, scores) for that request's images."""

    def __init__(self, runner, calibration, window=WINDOW_S, max_batch=MAX_BATCH, eager=True):
        self.runner, self.calibration, self.window, self.max_batch = runner, calibration, window, max_batch
        self.eager = eager  # go before the window ends once every request in flight has joined
        self.queue = asyncio.Queue()
        self.executor = ThreadPoolExecutor(1, "runtime")  # runtimes are not thread-safe: one call at a time
        self.calls = 0  # runtime calls made, and images in them (tests and the log read them)
        self.images = 0
        self.in_flight = 0  # requests that may still join a batch; set by the app around each request

    async def classify(self, images):
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((images, future))
        return await future

    async def run(self):
        """The batching loop, one task for the server's life."""
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            size, deadline = len(items[0][0]), loop.time() + self.window
            # Eager: wait only while other requests are in flight; one alone goes at once.
            while size < self.max_batch and (not self.queue.empty() or not self.eager or self.in_flight > len(items)):
                try:
                    item = self.queue.get_nowait() if not self.queue.empty() else \
                        await asyncio.wait_for(self.queue.get(), deadline - loop.time())
                except TimeoutError:
                    break
                items.append(item)
                size += len(item[0])
            try:
                results = await loop.run_in_executor(self.executor, self._call, [images for images, _ in items])
            except Exception as e:  # noqa: BLE001 - a broken model fails its requests, never the server
                for _, future in items:
                    if not future.done():
                        future.set_exception(e)
                continue
            for (_, future), result in zip(items, results, strict=True):
                if not future.done():  # a client that went away has its future cancelled
                    future.set_result(result)

    def _call(self, batches):
        """One runtime call for all the requests' images; their results, split back per request."""
        from fmnist.ship.ood import flags

        images = np.concatenate(batches)
        probabilities = self.runner.probabilities(images)
        flagged, scores = flags(self.calibration, images, probabilities)
        self.calls += 1
        self.images += len(images)
        ends = np.cumsum([len(b) for b in batches])[:-1]
        return list(zip(*(np.split(a, ends) for a in (probabilities, flagged, scores)), strict=True))


# ---------------------------------------------------------------------------------------------------------------
# Reading requests
# ---------------------------------------------------------------------------------------------------------------


async def read_body(request, timeout=READ_TIMEOUT_S, limit=MAX_BODY_BYTES):
    """The request body, refused (413) over `limit` bytes, said or sent, and (408) when it takes over `timeout`."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise ClientError(413, f"the body is over the limit of {limit // 2**20} MB")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ClientError(413, f"the body is over the limit of {limit // 2**20} MB")
                chunks.append(chunk)
    except TimeoutError:
        raise ClientError(408, f"the body did not arrive within {timeout:g} s; send it at once") from None
    return b"".join(chunks)


def _no_constants(name):
    raise ClientError(400, f"{name} is not a number JSON allows; send pixel values 0-255")


def parse_json(body):
    try:
        return json.loads(body, parse_constant=_no_constants)
    except ClientError:
        raise
    except (ValueError, RecursionError) as e:  # RecursionError: [[[[...]]]] nested thousands deep
        raise ClientError(400, f"malformed JSON ({first_line(e, 120)})") from None


def pixels(value, what, input_name):
    """A tensor from JSON as float32 images (N, 28, 28), checked: shape, finite numbers, 0-255."""
    if isinstance(value, dict):  # a named input, as TF Serving allows: {"<input name>": tensor}
        if list(value) != [input_name]:
            raise ClientError(400, f"{what}: the model's one input is named {input_name!r}; got "
                                   f"{', '.join(map(repr, value))[:100] or 'none'}")
        value = value[input_name]
    try:
        x = np.asarray(value, dtype="float32")
    except (ValueError, TypeError):
        raise ClientError(400, f"{what}: every image must be 28x28 numbers (the same shape each)") from None
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3 or x.shape[1:] != (SIDE, SIDE):
        raise ClientError(400, f"{what}: expected images of 28x28 (or 28x28x1) pixels; got shape "
                               f"{list(x.shape[1:]) if x.ndim else 'a single number'}")
    if len(x) == 0:
        raise ClientError(400, f"{what}: no images")
    if len(x) > MAX_INSTANCES:
        raise ClientError(400, f"{what}: {len(x)} images is over the limit of {MAX_INSTANCES} a request; split them")
    if not np.isfinite(x).all():
        raise ClientError(400, f"{what}: NaN or infinite pixel values; send 0-255")
    if x.min() < 0 or x.max() > 255:
        raise ClientError(400, f"{what}: pixel values must be 0-255; got {x.min():g} to {x.max():g}")
    return x


def predict_request(body, input_name):
    """(float32 images, "row" or "columnar") from a :predict body in TF Serving's format."""
    request = parse_json(body)
    if not isinstance(request, dict):
        raise ClientError(400, 'the body must be a JSON object with "instances" or "inputs"')
    signature = request.get("signature_name", "serving_default")
    if signature not in ("serving_default", ""):
        raise ClientError(400, f'Serving signature name: "{str(signature)[:80]}" not found in signature def')
    keys = {"instances", "inputs"} & set(request)
    if len(keys) != 1:
        raise ClientError(400, 'the body needs exactly one of "instances" (row format) or "inputs" (columnar)')
    if "instances" in request:
        instances = request["instances"]
        if not isinstance(instances, list):
            raise ClientError(400, '"instances" must be a list, one entry per image')
        if len(instances) > MAX_INSTANCES:
            raise ClientError(400, f"{len(instances)} instances is over the limit of {MAX_INSTANCES} a request; "
                                   "split them")
        if any(isinstance(i, dict) for i in instances):  # each row names the input: {"<input name>": image}
            if not all(isinstance(i, dict) and list(i) == [input_name] for i in instances):
                raise ClientError(400, f"instances: each named row must hold just the model's input, {input_name!r}")
            instances = [i[input_name] for i in instances]
        return pixels(instances, "instances", input_name), "row"
    return pixels(request["inputs"], "inputs", input_name), "columnar"


class Upload(io.BytesIO):
    """An uploaded file, for predict's read_image: its messages say "the uploaded image", never a path."""

    def __str__(self):
        return "the uploaded image"


def decode_upload(body):
    """An uploaded photo as the (28, 28) uint8 image the model sees, through predict's own safe reader."""
    from fmnist.ship.predict import read_image, to_dataset_form

    if not body:
        raise ClientError(400, "no image: send the file's bytes as the body (curl --data-binary @photo.png)")
    try:
        return to_dataset_form(read_image(Upload(body)))
    except UserError as e:
        raise ClientError(400, str(e)) from None


# ---------------------------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------------------------


def tensor_info(name, shape):
    dims = [{"size": str(-1 if d is None else d), "name": ""} for d in shape]
    return {name: {"dtype": "DT_FLOAT", "tensor_shape": {"dim": dims, "unknown_rank": False},
                   "name": f"serving_default_{name}:0"}}


class Model:
    """What the routes of one served model need: the runner, the batcher, its name and TF Serving's answers."""

    def __init__(self, runner, calibration, name, test_set=None, *, window=WINDOW_S, max_batch=MAX_BATCH, eager=True,
                 read_timeout=READ_TIMEOUT_S, seed=None):
        self.runner, self.name, self.read_timeout = runner, name, read_timeout
        self.test_images, self.test_labels = test_set or (None, None)
        self.batcher = Batcher(runner, calibration, window, max_batch, eager)
        self.decoder = ThreadPoolExecutor(1, "decode")  # one photo decoded at a time: a big one takes up to 1 GB
        self.rng = np.random.default_rng(seed)
        self.status = {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                                 "status": {"error_code": "OK", "error_message": ""}}]}
        self.metadata = {"model_spec": {"name": name, "signature_name": "", "version": "1"},
                         "metadata": {"signature_def": {"signature_def": {"serving_default": {
                             "inputs": tensor_info(runner.input_name, runner.input_shape),
                             "outputs": tensor_info(runner.output_name, (None, len(CLASS_NAMES))),
                             "method_name": "tensorflow/serving/predict"}}}}}
        self.methods = {":predict": self.predict, ":classify-image": self.classify_image,
                        ":classify-test-image": self.classify_test_image}

    def resolve(self, request):
        """The part of /v1/models/... after the name and version (None, "/metadata" or ":method"), or a 404/405."""
        match = ROUTE.fullmatch(request.path_params["rest"])
        if match is None:
            raise ClientError(404, f"no such route: {request.url.path[:100]}")
        if match["name"] != self.name:
            raise ClientError(404, f"Servable not found for request: Latest({match['name'][:100]})")
        if match["version"] not in (None, "1"):
            raise ClientError(404, f"Servable not found for request: Specific({self.name}, {match['version'][:20]})")
        rest = match["rest"]
        if rest and rest.startswith(":") and rest not in self.methods:
            raise ClientError(404, f"no such method: {rest[:40]} (use {', '.join(self.methods)})")
        wanted = "POST" if rest in self.methods else "GET"
        if request.method != wanted:
            raise ClientError(405, f"use {wanted} for {request.url.path[:100]}")
        return rest

    async def route(self, request):
        from starlette.responses import JSONResponse

        try:
            rest = self.resolve(request)
            if rest in self.methods:
                self.batcher.in_flight += 1
                try:
                    return JSONResponse(await self.methods[rest](await read_body(request, self.read_timeout)))
                finally:
                    self.batcher.in_flight -= 1
            return JSONResponse(self.metadata if rest == "/metadata" else self.status)
        except ClientError as e:
            return JSONResponse({"error": str(e)}, e.status)
        except UserError as e:  # the model itself failed (its outputs are not probabilities)
            return JSONResponse({"error": str(e)}, 500)

    async def predict(self, body):
        images, form = predict_request(body, self.runner.input_name)
        probabilities, _, _ = await self.batcher.classify(images)
        return {"predictions" if form == "row" else "outputs": probabilities.tolist()}

    async def classify_image(self, body):
        image = await asyncio.get_running_loop().run_in_executor(self.decoder, decode_upload, body)
        return await self.classified(image)

    async def classify_test_image(self, body):
        if self.test_images is None:
            raise ClientError(404, "this server has no test images")
        i = int(self.rng.integers(len(self.test_images)))
        return await self.classified(self.test_images[i], {"label": CLASS_NAMES[self.test_labels[i]],
                                                           "test_index": i})

    async def classified(self, image, extra=None):
        """The answer for one 28x28 image: top 3, the flag, the image, the heat map where the model allows."""
        from fmnist.ship.predict import top_classes

        probabilities, flagged, scores = await self.batcher.classify(image[None].astype("float32"))
        answer = {"top": top_classes(probabilities[0]), "not_a_garment": bool(flagged[0]),
                  "ood_score": round(float(scores[0]), 4), "ood_threshold": 1.0, "image": image.astype(int).tolist(),
                  **(extra or {})}
        if self.runner.kind == "keras":  # the heat maps need the Keras model's gradients
            heat = await asyncio.get_running_loop().run_in_executor(
                self.batcher.executor, heat_map, self.runner.model, image, int(np.argmax(probabilities[0])))
            answer["heat_map"] = np.round(heat, 3).tolist()
        return answer


def create_app(runner, calibration, name, test_set=None, **options):
    """The Starlette app serving `runner` as model `name`; `test_set` (images, labels) feeds the random test
    image; `options` go to Model (window, max_batch, eager, read_timeout, seed)."""
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    model = Model(runner, calibration, name, test_set, **options)
    page = PAGE.read_text().replace("{{MODEL}}", html.escape(name))

    async def index(request):
        return HTMLResponse(page)

    @asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(model.batcher.run())
        yield
        task.cancel()
        model.batcher.executor.shutdown()
        model.decoder.shutdown()

    app = Starlette(routes=[Route("/", index), Route("/v1/models/{rest:path}", model.route, methods=["GET", "POST"])],
                    lifespan=lifespan)
    app.state.model = model
    return app


def http_protocol(read_timeout):
    """uvicorn's httptools protocol with a deadline for each request's line and headers, which uvicorn lacks:
    without it a client that sends them byte by byte (slowloris) holds a connection for ever. "auto" without
    httptools."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return "auto"

    class Protocol(HttpToolsProtocol):
        headers_timer = None

        def connection_made(self, transport):
            super().connection_made(transport)
            self.arm()

        def on_message_begin(self):  # the first bytes of a request: its headers must be in within read_timeout
            super().on_message_begin()
            if self.headers_timer is None:
                self.arm()

        def on_headers_complete(self):
            self.disarm()
            super().on_headers_complete()

        def connection_lost(self, exc):
            self.disarm()
            super().connection_lost(exc)

        def arm(self):
            self.headers_timer = self.loop.call_later(read_timeout, self.too_slow)

        def disarm(self):
            if self.headers_timer is not None:
                self.headers_timer.cancel()
                self.headers_timer = None

        def too_slow(self):
            self.headers_timer = None
            if not self.transport.is_closing():
                body = json.dumps({"error": f"the request's headers did not arrive within {read_timeout:g} s"})
                self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                                     b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body.encode()))
                self.transport.close()

    return Protocol


def heat_map(model, image, class_index):
    """(28, 28) in [0, 1]: where the .keras model found its evidence for the class (fmnist.explain)."""
    from fmnist.explain import heat_maps

    return heat_maps(model, image[None], np.array([class_index]))[0]


def serve(model_path, host="127.0.0.1", port=8500, *, name=None, threads=THREADS,
          read_timeout=READ_TIMEOUT_S):
    """The `serve` command: load, calibrate the flag, then serve until Ctrl-C or SIGTERM (requests in flight are
    finished first). .onnx and .tflite files are served without importing TensorFlow."""
    import uvicorn

    from fmnist.data import find_data_dir, read_idx_file
    from fmnist.ship.ood import calibration_for
    from fmnist.ship.runtimes import open_model

    started = time.perf_counter()
    model_path = Path(model_path)
    name = name or model_path.stem
    if not re.fullmatch(NAME_PATTERN, name):
        raise UserError(f"{name!r:.80} is not usable as a model name in a URL; give --name with letters, digits, . _ -")
    sock = listen(host, port)  # before the slow part: a port in use is said at once
    runner = open_model(model_path, threads)
    folder, _ = find_data_dir()
    test_set = tuple(read_idx_file(folder / f"t10k-{kind}-idx{rank}-ubyte.gz") for kind, rank in (("images", 3),
                                                                                                  ("labels", 1)))
    # The training images are read only when the card beside the model holds no calibration.
    calibration = calibration_for(runner, model_path)
    app = create_app(runner, calibration, name, test_set, read_timeout=read_timeout)
    url = f"http://{host if ':' not in host else f'[{host}]'}:{sock.getsockname()[1]}"
    print(f"Serving {model_path} ({runner.kind}) as {name!r} at {url}/ after {time.perf_counter() - started:.1f} s; "
          f"TF Serving API at {url}/v1/models/{name}; batching within {WINDOW_S * 1e3:g} ms, up to {MAX_BATCH} "
          f"images a call; TensorFlow {'loaded' if 'tensorflow' in sys.modules else 'not loaded'}. Ctrl-C or "
          "SIGTERM stops it.", flush=True)
    config = uvicorn.Config(app, http=http_protocol(read_timeout), log_level="warning", access_log=False,
                            timeout_graceful_shutdown=30, h11_max_incomplete_event_size=16 * 2**10)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def listen(host, port):
    """The listening socket, bound here so that a port in use is one line, not uvicorn's log and exit."""
    import socket

    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP: asyncio then turns off Nagle
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)  # connections wait in the backlog until uvicorn takes them
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port} ({first_line(e)}); choose another --port or --host") \
            from None
    return sock


def port_number(text):
    """argparse type for --port."""
    import argparse

    if not text.isdigit() or not 0 <= int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r:.20} is not a port number (1-65535, or 0 for any free one)")
    return int(text)

