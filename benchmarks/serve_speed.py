"""Serving speed: `fashion_mnist.py serve` against the server a tutorial writes, single images over loopback.

    python benchmarks/serve_speed.py                      # the fast net, untrained: speed does not depend on weights
    python benchmarks/serve_speed.py models/RUN.keras     # a trained model (ours serves its ONNX export)
    python benchmarks/serve_speed.py --seconds 2 --clients 1 8

Ours: `serve MODEL.onnx` (TF Serving's REST API, requests batched). Naive: Keras `model.predict` inside a plain
handler (http.server, one request at a time), the .keras model. Each is a process of its own; this process is the
load generator: asyncio clients, each on one keep-alive connection, each sending `{"instances": [image]}` for one
test image as soon as its previous answer is in. It reports requests/s, median and 99th-percentile latency and
errors at each number of clients. Server and load generator share this machine's cores.
"""

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from fmnist.config import Number  # noqa: E402
from fmnist.errors import UserError, run_guarded  # noqa: E402

GOALS = {"requests_per_s": 1000, "p99_ms": 50, "ratio": 20}  # at 32 clients, on 2 cores (issue 31)
START_TIMEOUT_S = 120


def naive_server(model_path, port):
    """What a tutorial writes: load the model, then per request parse the JSON, call model.predict, answer."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import keras

    model = keras.models.load_model(model_path)
    one_at_a_time = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as our server's clients get

        def do_POST(self):  # noqa: N802 - http.server's name
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with one_at_a_time:
                predictions = model.predict(np.array(request["instances"], "float32"), verbose=0)
            body = json.dumps({"predictions": predictions.tolist()}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"Serving at http://127.0.0.1:{server.server_address[1]}/", flush=True)
    server.serve_forever()


def start(command, log):
    """Start a server process and wait for its "http://host:port" line; returns (process, port)."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1"))
    deadline = time.monotonic() + START_TIMEOUT_S
    for line in proc.stdout:
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if found:
            return proc, int(found[1])
        if time.monotonic() > deadline:
            break
    proc.kill()
    log.seek(0)
    said = [line for line in log.read().splitlines() if line.strip()][-1:] or ["nothing"]
    raise UserError(f"the server {' '.join(map(str, command[1:3]))} did not start (exit {proc.wait()}): {said[0]}")


async def one_client(port, path, bodies, times, results):
    """One keep-alive connection sending a request as soon as the previous answer is in."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    (start_at, stop_at), (latencies, statuses) = times, results
    i = 0
    while (now := time.perf_counter()) < stop_at:
        body = bodies[i % len(bodies)]
        i += 1
        writer.write(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: "
                     b"%d\r\n\r\n%s" % (path, len(body), body))
        status = (await reader.readline()).split(b" ")[1]
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            key, _, value = line.partition(b":")
            if key.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        if now >= start_at:  # the first moments only warm up
            latencies.append(time.perf_counter() - now)
            statuses.append(status)
    writer.close()


def load(port, path, bodies, clients, seconds, *, warmup=0.5):
    """(requests/s, p50 s, p99 s, errors) with `clients` clients for `seconds` after a warm-up."""
    latencies, statuses = [], []

    async def run():
        start_at = time.perf_counter() + warmup
        await asyncio.gather(*(one_client(port, path, bodies, (start_at, start_at + seconds),
                                          (latencies, statuses))
                               for _ in range(clients)))

    asyncio.run(run())
    if not latencies:
        raise UserError(f"no request finished within {seconds:g} s with {clients} clients; give more --seconds")
    return len(latencies) / seconds, np.median(latencies), np.percentile(latencies, 99), \
        sum(s != b"200" for s in statuses)


def prepare_model(model_path, folder):
    """(.keras path, .onnx path): the given model or an untrained fast net, and its ONNX export."""
    import keras

    from fmnist.models import build_model

    if model_path is None:
        keras.config.set_dtype_policy("float32")
        keras.utils.set_random_seed(0)
        model = build_model("fast")
        model_path = folder / "fast.keras"
        model.save(model_path)
    else:
        from fmnist.evaluation import float32_copy, load_model

        model = float32_copy(load_model(model_path))  # as export does: ONNX files compute in float32
    model(np.zeros((1, *model.input_shape[1:]), "float32"))  # Keras's exporters need the model built
    onnx = folder / f"{Path(model_path).stem}.onnx"
    model.export(str(onnx), format="onnx", verbose=False)
    return Path(model_path), onnx


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", nargs="?", metavar="MODEL.keras", help="a trained model (default: the fast net, "
                                                                        "untrained)")
    parser.add_argument("--seconds", type=Number(float, 0.1), default=5.0,
                        help="measured seconds per number of clients, for our server (default 5)")
    parser.add_argument("--naive-seconds", type=Number(float, 0.1), default=None,
                        help="the same for the naive server (default: --seconds)")
    parser.add_argument("--clients", type=Number(int, 1, 1000), nargs="+", default=[1, 8, 32])
    parser.add_argument("--threads", type=Number(int, 1, 1024), help="our server's runtime threads (default: serve's)")
    parser.add_argument("--naive-server", nargs=2, metavar=("MODEL", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.naive_server:
        return naive_server(args.naive_server[0], int(args.naive_server[1]))

    from machine import describe_machine

    from fmnist.data import load_fashion_mnist
    from fmnist.speed.cpu import isa_flags

    print(describe_machine())
    print(f"CPU flags: {' '.join(isa_flags()) or 'no AVX2'}; load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    bodies = [json.dumps({"instances": [image.tolist()]}).encode() for image in load_fashion_mnist().x_test[:200]]
    rows = {}
    with tempfile.TemporaryDirectory() as folder, open(Path(folder) / "servers.log", "w+") as log:
        keras_path, onnx_path = prepare_model(args.model, Path(folder))
        print(f"Model: {args.model or 'fast (untrained; speed does not depend on the weights)'}; ours serves "
              f"{onnx_path.name}, the naive server {keras_path.name}", flush=True)
        servers = {
            "ours": ([sys.executable, "fashion_mnist.py", "serve", str(onnx_path), "--port", "0",
                      *(["--threads", str(args.threads)] if args.threads else [])],
                     f"/v1/models/{onnx_path.stem}:predict", args.seconds),
            "naive": ([sys.executable, str(Path(__file__).resolve()), "--naive-server", str(keras_path), "0"],
                      "/v1/models/naive:predict", args.naive_seconds or args.seconds),
        }
        for label, (command, path, seconds) in servers.items():
            proc, port = start(command, log)
            try:
                for clients in args.clients:
                    rows[label, clients] = load(port, path.encode(), bodies, clients, seconds)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    print(format_table(rows, args.clients))
    print(f"Load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"Command: python benchmarks/serve_speed.py {' '.join(argv)}".rstrip())
    return 0


def format_table(rows, clients):
    lines = [f"{'server':<6} {'clients':>7} {'requests/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} "
             f"{'vs naive':>8}"]
    for (label, n), (rate, p50, p99, errors) in sorted(rows.items(), key=lambda item: (item[0][1], item[0][0])):
        ratio = rate / rows["naive", n][0]
        lines.append(f"{label:<6} {n:>7} {rate:>10,.0f} {1e3 * p50:>8.2f} {1e3 * p99:>8.2f} {errors:>6} "
                     f"{ratio:>7.1f}x")
    top = max(clients)
    rate, _, p99, errors = rows["ours", top]
    ratio = rate / rows["naive", top][0]
    met = rate >= GOALS["requests_per_s"] and 1e3 * p99 < GOALS["p99_ms"] and not errors and ratio >= GOALS["ratio"]
    lines.append(f"At {top} clients: {rate:,.0f} requests/s, p99 {1e3 * p99:.1f} ms, {errors} errors, {ratio:.0f}x "
                 f"naive (goals at 32 clients: >= {GOALS['requests_per_s']:,}/s, p99 < {GOALS['p99_ms']} ms, no "
                 f"errors, >= {GOALS['ratio']}x): {'met' if met else 'NOT met'}")
    return "\n".join(lines)


if __name__ == "__main__":
    run_guarded(lambda: main(sys.argv[1:]))
