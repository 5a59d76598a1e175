"""One way to run any of the model files this project makes: .keras, a SavedModel folder, .onnx, .tflite.

`open_model(path)` gives a Runner whose `probabilities(images)` takes uint8 images (N, 28, 28) and returns the
class probabilities (N, 10). `predict`, export's self-check and benchmarks/inference_speed.py all go through it,
so the three measure the same thing. Each runtime is imported only when a file of its kind is opened, and a
missing one is an error that names the `pip install` that fixes it.
"""

import os
from pathlib import Path

import numpy as np

from fmnist.data import PREDICT_BATCH
from fmnist.errors import UserError, first_line

INSTALL = {  # module -> the command that installs it (all are in requirements.txt)
    "onnxruntime": "pip install 'onnxruntime>=1.20,<2'",
    "ai_edge_litert": "pip install 'ai-edge-litert>=2.0,<3'",
    "tf2onnx": "pip install 'tf2onnx>=1.17,<2'",
}
SUFFIXES = {".keras": "keras", ".onnx": "onnx", ".tflite": "litert", ".savedmodel": "saved_model"}


def require(module):
    """Import `module`, or fail with the one command that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"{module} is not installed; run: {INSTALL[module]}") from None


def runtime_version(kind):
    """'onnxruntime 1.32.0' and the like, for the model card."""
    from importlib.metadata import PackageNotFoundError, version

    package = {"keras": "keras", "saved_model": "tensorflow", "onnx": "onnxruntime", "litert": "ai-edge-litert"}[kind]
    try:
        return f"{package} {version(package)}"
    except PackageNotFoundError:
        return package


def kind_of(path):
    """The runtime a model file needs, from its suffix (a SavedModel is a folder holding saved_model.pb)."""
    path = Path(path)
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return "saved_model"
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None or kind == "saved_model":
        raise UserError(f"{path}: not a model file this project runs (.keras, .onnx, .tflite, or a SavedModel "
                        "folder)")
    return kind


class Runner:
    """A loaded model file. `run(x)` is one call of the runtime on a float32 batch in the model's own layout;
    `probabilities(images)` takes uint8 images (N, 28, 28), whole sets in PREDICT_BATCH-sized calls."""

    kind = ""
    tolerance = 1e-2  # how far a row of probabilities may sum from 1

    def __init__(self, path, input_name, input_shape, output_name, output_shape):
        from fmnist.evaluation import check_model_shapes

        check_model_shapes(path, input_shape, output_shape)  # a file from elsewhere may map pixels to anything
        self.path, self.input_name, self.input_shape, self.output_name = Path(path), input_name, input_shape, \
            output_name

    def run(self, x):
        raise NotImplementedError

    def probabilities(self, images):
        from fmnist.evaluation import as_input, checked_probabilities

        x = as_input(images, self.input_shape)
        out = [np.asarray(self.run(x[i:i + PREDICT_BATCH]), "float32") for i in range(0, len(x), PREDICT_BATCH)]
        return checked_probabilities(np.concatenate(out) if out else np.zeros((0, 10), "float32"), self.tolerance)


class KerasRunner(Runner):
    kind = "keras"

    def __init__(self, path, model=None):
        from fmnist.evaluation import load_model

        self.model = model if model is not None else load_model(path)
        super().__init__(path, self.model.inputs[0].name, tuple(self.model.input_shape), "predictions",
                         tuple(self.model.output_shape))

    def run(self, x):
        return self.model.predict(x, batch_size=PREDICT_BATCH, verbose=0)

    def probabilities(self, images):
        from fmnist.evaluation import predict_probabilities

        return predict_probabilities(self.model, images, batch_size=PREDICT_BATCH)


# A SavedModel is a program, and loading it runs it: only graphs made of the ops this project's own exports use
# (every model, at float32 and bf16) are run. Checkpoint ops read and write files, so they may appear only in the
# functions that save and restore the variables, never in what a signature runs.
COMPUTE_OPS = frozenset((
    "AddV2 AssignVariableOp BiasAdd Const Conv2D DisableCopyOnRead Identity MatMul MaxPool Mean Mul NoOp Pack "
    "Placeholder ReadVariableOp Relu Reshape Rsqrt Select Shape Softmax Squeeze StatefulPartitionedCall "
    "StridedSlice Sub VarHandleOp VarIsInitializedOp").split())
CHECKPOINT_OPS = frozenset(
    "MergeV2Checkpoints RestoreV2 SaveV2 ShardedFilename StaticRegexFullMatch StringJoin".split())
MAX_GRAPH_BYTES = 64 * 2**20  # the weights are in variables/; the graph of any model here is under 1 MB


def check_savedmodel_graph(path):
    """Refuse, naming the op, a SavedModel whose graph (its function library included) holds an op outside
    COMPUTE_OPS and CHECKPOINT_OPS, or whose signatures reach a checkpoint op. Reads the file; runs nothing."""
    from tensorflow.core.protobuf import saved_model_pb2

    graph_file = Path(path) / "saved_model.pb"
    if graph_file.stat().st_size > MAX_GRAPH_BYTES:
        raise UserError(f"{path}: saved_model.pb is over {MAX_GRAPH_BYTES // 2**20} MB, more than any model here")
    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString(graph_file.read_bytes())
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError, or worse for a crafted file
        raise UserError(f"{path}: not a readable SavedModel ({first_line(e)})") from None
    for meta_graph in saved.meta_graphs:
        functions = {f.signature.name: f.node_def for f in meta_graph.graph_def.library.function}
        nodes = {node.name: node for node in meta_graph.graph_def.node}
        for node in [*nodes.values(), *(n for body in functions.values() for n in body)]:
            if node.op not in COMPUTE_OPS | CHECKPOINT_OPS:
                raise UserError(f"{path}: refusing to run a SavedModel that holds the op {node.op!r:.80}, which this "
                                "project's models never use (a SavedModel is a program: only run one you trust "
                                "through its own tools)")
        for node in _reached_by_signatures(meta_graph, nodes, functions):
            if node.op in CHECKPOINT_OPS:
                raise UserError(f"{path}: refusing to run a SavedModel whose signatures read or write files (op "
                                f"{node.op!r})")


def _reached_by_signatures(meta_graph, nodes, functions):
    """Every node that running any of the meta graph's signatures can execute: the graph's nodes they depend on,
    and the nodes of every function those call, transitively."""
    todo = [tensor.name.split(":")[0].lstrip("^") for signature in meta_graph.signature_def.values()
            for tensor in [*signature.inputs.values(), *signature.outputs.values()]]
    seen, reached, called = set(), [], []
    while todo:
        name = todo.pop()
        if name in seen or name not in nodes:
            continue
        seen.add(name)
        reached.append(nodes[name])
        todo += [source.split(":")[0].lstrip("^") for source in nodes[name].input]
    done_functions = set()
    while reached or called:
        node = reached.pop() if reached else called.pop()
        yield node
        for attribute in node.attr.values():
            name = attribute.func.name
            if name and name in functions and name not in done_functions:
                done_functions.add(name)
                called += functions[name]


class SavedModelRunner(Runner):
    kind = "saved_model"

    def __init__(self, path):
        import tensorflow as tf

        check_savedmodel_graph(path)
        try:
            loaded = tf.saved_model.load(str(path))
            self.serve = loaded.signatures["serving_default"]
        except Exception as e:  # noqa: BLE001 - a broken folder can fail in many ways; all mean the same
            raise UserError(f"{path}: not a loadable SavedModel ({first_line(e)})") from None
        self.loaded = loaded  # the signature's variables live as long as the loaded object
        (name, spec), (output, output_spec) = _one_each(path, self.serve.structured_input_signature[1].items(),
                                                        self.serve.structured_outputs.items())
        super().__init__(path, name, _shape(spec.shape), output, _shape(output_spec.shape))

    def run(self, x):
        return self.serve(**{self.input_name: x})[self.output_name].numpy()


class OnnxRunner(Runner):
    kind = "onnx"

    def __init__(self, path, threads=None):
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3  # warnings about unused initialisers are not the user's business
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own error types for a bad file
            raise UserError(f"{path}: not a loadable ONNX model ({first_line(e)})") from None
        inp, out = _one_each(path, self.session.get_inputs(), self.session.get_outputs())
        super().__init__(path, inp.name, _shape(inp.shape), out.name, _shape(out.shape))

    def run(self, x):
        return self.session.run([self.output_name], {self.input_name: x})[0]


class LiteRTRunner(Runner):
    kind = "litert"

    def __init__(self, path, threads=None):
        require("ai_edge_litert")
        from ai_edge_litert.interpreter import Interpreter

        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads or os.cpu_count())
        except Exception as e:  # noqa: BLE001 - the interpreter raises ValueError or RuntimeError for a bad file
            raise UserError(f"{path}: not a loadable LiteRT model ({first_line(e)})") from None
        inp, out = _one_each(path, self.interpreter.get_input_details(), self.interpreter.get_output_details())
        self.input_index, self.output_index, self.allocated = inp["index"], out["index"], None
        if self.quantised():
            self.tolerance = 5e-2  # ten outputs each rounded to a step of 1/256, and an integer softmax
        names = self.interpreter.get_signature_list().get("serving_default", {})
        super().__init__(path, (names.get("inputs") or [inp["name"]])[0], _shape(inp["shape_signature"]),
                         (names.get("outputs") or [out["name"]])[0], _shape(out["shape_signature"]))

    def quantised(self):
        """True for an int8 file: any of its tensors is stored as 8-bit integers."""
        return any(t["dtype"] in (np.int8, np.uint8) for t in self.interpreter.get_tensor_details())

    def run(self, x):
        # The interpreter has fixed tensor shapes: resize only when the batch size changes, since that
        # re-plans its memory.
        if self.allocated != x.shape:
            self.interpreter.resize_tensor_input(self.input_index, x.shape)
            self.interpreter.allocate_tensors()
            self.allocated = x.shape
        self.interpreter.set_tensor(self.input_index, x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output_index)


def _one_each(path, inputs, outputs):
    """The model's one input and one output; a model with more or fewer of either is refused."""
    inputs, outputs = list(inputs), list(outputs)
    if len(inputs) != 1 or len(outputs) != 1:
        raise UserError(f"{path}: the model takes {len(inputs)} inputs and gives {len(outputs)} outputs; expected "
                        "one of each (an image batch in, 10 class probabilities out)")
    return inputs[0], outputs[0]


def _shape(dimensions):
    """A runtime's shape as a tuple of ints, with None for what it leaves open (None, -1, or a name such as "N")."""
    if dimensions is None:
        return None
    return tuple(int(d) if isinstance(d, int | np.integer) and d >= 0 else None for d in dimensions)


def open_model(path, threads=None, *, keras_only=False):
    """A Runner for the model file at `path`, whatever its kind (`keras_only`: a .keras file, for the commands
    that need Keras's model); a missing or broken file is a UserError.

    The file is first opened and run once in a child process (Trial), so that a file made to crash a runtime, or
    to take all memory, costs the child and not this process."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    kind = kind_of(path)
    if keras_only and kind != "keras":
        raise UserError(f"{path}: this command takes a .keras model (the file training writes to models/)")
    if kind == "keras":
        from fmnist.evaluation import check_keras_archive

        check_keras_archive(path)  # a look at the zip's directory: a file that is no .keras answers at once
    trial = Trial(path, kind)
    require(RUNTIME_MODULE[kind])  # imported here while the child works: the two overlap on a second core
    trial.check()
    return _load(path, kind, threads)


RUNTIME_MODULE = {"keras": "keras", "saved_model": "tensorflow", "onnx": "onnxruntime", "litert": "ai_edge_litert"}


def _load(path, kind, threads=None):
    if kind == "keras":
        return KerasRunner(path)
    if kind == "saved_model":
        return SavedModelRunner(path)
    return (OnnxRunner if kind == "onnx" else LiteRTRunner)(path, threads)


# The runtimes are C++ and a crafted file can crash them: a one-byte change to a .tflite made LiteRT's loader
# segfault, which no `except` catches. So every file is opened and run once in a child process first, with a cap
# on its memory, and loaded here only if the child came back clean.
CHILD_MEMORY_BYTES = 4 * 2**30  # address space: TensorFlow's import needs about 1.5 GB of it, resnet18 ~100 MB more
CHILD_SECONDS = 300
MAX_PARAMETERS = 50_000_000  # resnet18 at its published width, the largest net here, has 11 M
_TRIAL = "import sys; from fmnist.ship.runtimes import trial; trial(sys.argv[1])"


class Trial:
    """The model file opened and run once in a child process; `check()` waits for it and turns a crash, an
    error, or a model too large into a UserError that says so in one line."""

    def __init__(self, path, kind):
        import subprocess
        import sys

        self.path, self.kind = path, kind
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
                   CUDA_VISIBLE_DEVICES="-1",  # CUDA reserves more address space than the cap; a CPU answers here
                   TF_CPP_MIN_LOG_LEVEL="3")
        self.child = subprocess.Popen([sys.executable, "-c", _TRIAL, str(path)], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, env=env)

    def check(self):
        import signal
        import subprocess

        path = self.path
        try:
            stdout, stderr = self.child.communicate(timeout=CHILD_SECONDS)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.communicate()
            raise UserError(f"{path}: opening and running it once took over {CHILD_SECONDS} s; not loading it") \
                from None
        finally:
            if self.child.poll() is None:  # Ctrl-C while waiting: the child goes too
                self.child.kill()
        if self.child.returncode == 0:
            return
        if any(sign in stderr.lower() for sign in ("memoryerror", "resourceexhausted", "bad_alloc", "allocat")):
            raise UserError(f"{path}: opening and running it takes more than {CHILD_MEMORY_BYTES // 2**30} GiB of "
                            "memory (tried in a separate process), more than any model here; not loading it")
        errors = [line.removeprefix("error: ") for line in stderr.splitlines() if line.startswith("error: ")]
        if errors:
            raise UserError(errors[-1])
        code = self.child.returncode
        cause = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
        raise UserError(f"{path}: the {runtime_version(self.kind)} runtime {cause} while opening this file (tried in "
                        "a separate process): the file is damaged or made to break its reader; don't use it")


def trial(path):
    """The child's side of Trial: cap its memory, load the file (a .keras model only if its config declares no more
    than MAX_PARAMETERS), and run two blank images through it."""
    import resource

    from fmnist.errors import run_guarded

    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_BYTES, CHILD_MEMORY_BYTES))  # before any runtime loads

    def main():
        kind = kind_of(path)
        if kind == "keras":
            check_declared_parameters(Path(path))
        runner = _load(Path(path), kind)
        try:
            runner.probabilities(np.zeros((2, 28, 28), np.uint8))
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - a runtime's own error types
            raise UserError(f"{path}: the model fails when run ({first_line(e)})") from None
        return 0

    run_guarded(main)


def check_declared_parameters(path):
    """Build the model that a .keras file's config declares, without its weights, and refuse it if it has more
    parameters than MAX_PARAMETERS (run in the memory-capped child: building is what costs)."""
    import json
    import zipfile

    from fmnist.evaluation import check_keras_archive

    check_keras_archive(path)
    import keras  # only now: a file that is no .keras archive never costs TensorFlow's import

    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
        parameters = keras.saving.deserialize_keras_object(config, safe_mode=True).count_params()
    except Exception as e:  # noqa: BLE001 - a broken or foreign config can fail in many ways; all mean the same
        raise UserError(f"{path}: not a loadable .keras model ({first_line(e)})") from None
    if parameters > MAX_PARAMETERS:
        raise UserError(f"{path}: its config declares {parameters:,} parameters, over the {MAX_PARAMETERS:,} that "
                        "any model here has; not loading it")
