"""The settings of one run: a frozen dataclass built from the entry script's defaults, the model's recipe and
the command line.

Validation happens here, in argparse, so that a bad value exits 2 with a clear message before TensorFlow loads.
"""

import argparse
import itertools
import math
import re
import threading
from dataclasses import asdict, dataclass

from fmnist.architectures import MODELS
from fmnist.recipes import RECIPES, recipe_note

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
SCHEDULES = ("constant", "cosine")
AUGMENTATIONS = ("none", "flip", "flip-shift", "flip-shift-erase")
TTA_CHOICES = ("none", "flip", "flip-shift")  # fmnist.evaluation.TTA_VIEWS, without importing NumPy for --help
TTA_HELP = ("test-time augmentation: average the prediction over the image and its mirror (flip), and also over each "
            "shifted a pixel left and right (flip-shift)")
KEEPS = ("best", "last")
STRATEGIES = ("auto", "one", "mirrored", "multiworker")
SWEEPABLE = ("model", "epochs", "batch_size", "learning_rate", "schedule", "warmup_epochs", "weight_decay",
             "augment", "val_fraction", "patience", "keep", "seed", "limit", "precision", "resnet_width")
MAX_RESNET_WIDTH = 1024  # 16x the published net: its last stage is already 8,192 channels wide
MAX_SEED = 2**32  # Keras and NumPy's legacy seeding take 32-bit seeds
MAX_TIMEOUT = threading.TIMEOUT_MAX  # the longest wait the OS timer (and faulthandler's watchdog) can take
# Where the files are may differ when a run is resumed; every other setting comes from the run's record.
RESUME_MAY_CHANGE = ("data_dir", "out")


@dataclass(frozen=True)
class Config:
    model: str
    epochs: int
    batch_size: int
    learning_rate: float
    schedule: str
    warmup_epochs: float
    weight_decay: float
    augment: str
    tta: str
    val_fraction: float
    patience: int
    keep: str
    seed: int
    limit: int | None
    precision: str
    resnet_width: int
    deterministic: bool
    strategy: str
    scale_lr: bool
    worker_timeout: float
    data_dir: str | None
    verify: bool
    out: str
    run_name: str | None
    resume: str | None

    def hyperparameters(self):
        """The settings that shape the result (not where files go), for the run record."""
        settings = asdict(self)
        for where in RESUME_MAY_CHANGE + ("run_name", "resume", "worker_timeout"):
            settings.pop(where)
        return settings


def _number(kind, minimum=None, maximum=None, min_inclusive=True, max_inclusive=False):
    """An argparse type that parses `kind` and checks its range, with a message that names the range."""

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        too_low = minimum is not None and (value < minimum if min_inclusive else value <= minimum)
        too_high = maximum is not None and (value > maximum if max_inclusive else value >= maximum)
        if too_low or too_high:
            low = f"{'>=' if min_inclusive else '>'} {minimum}" if minimum is not None else ""
            high = f"{'<=' if max_inclusive else '<'} {maximum}" if maximum is not None else ""
            bounds = " and ".join(filter(None, [low, high]))
            raise argparse.ArgumentTypeError(f"{text} is out of range (must be {bounds})")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _run_name(text):
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not usable as a file name (use letters, digits, . _ -)")
    return text


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except where the help text already does or where "(default: None)" would say nothing."""

    def _get_help_string(self, action):
        if action.default is None or isinstance(action.default, bool) or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser(defaults, description):
    p = argparse.ArgumentParser(description=description, formatter_class=_HelpFormatter, allow_abbrev=False)

    def recipe_flag(group, flag, help_text, **kwargs):
        """A setting a model's recipe can change; --help shows the recipes' values beside the default."""
        key = flag[2:].replace("-", "_")
        group.add_argument(flag, default=defaults[key], help=f"{help_text} {recipe_note(key, defaults[key])}",
                           **kwargs)

    model = p.add_argument_group("model and training")
    model.add_argument("--model", choices=sorted(MODELS), default=defaults["model"],
                       help="architecture to train; fast and best train with their own recipes (below)")
    recipe_flag(model, "--epochs", "maximum epochs", type=_number(int, 1))
    recipe_flag(model, "--batch-size", "images per step", type=_number(int, 1))
    recipe_flag(model, "--learning-rate", "peak learning rate", type=_number(float, 0, min_inclusive=False))
    recipe_flag(model, "--schedule", "learning-rate schedule", choices=SCHEDULES)
    recipe_flag(model, "--warmup-epochs", "epochs of linear warm-up (cosine schedule)", type=_number(float, 0))
    recipe_flag(model, "--weight-decay", "AdamW's decoupled weight decay, applied as a shrink of weight decay x "
                "learning rate a step; 0 trains with Adam",
                type=_number(float, 0))
    recipe_flag(model, "--augment", "training-time augmentation: horizontal flips, then also shifts of up to 2 px, "
                "then also random erasing", choices=AUGMENTATIONS)
    recipe_flag(model, "--tta", f"{TTA_HELP}; shifts suit a net trained with --augment that shifts too",
                choices=TTA_CHOICES)
    recipe_flag(model, "--patience", "early stopping: epochs without a lower validation loss",
                type=_number(int, 1))
    recipe_flag(model, "--keep", "the model a run keeps, saves and tests: the epoch with the lowest validation "
                "loss, or the last one", choices=KEEPS)
    recipe_flag(model, "--val-fraction", "share of the 60,000 training images held out for validation",
                type=_number(float, 0, 1, min_inclusive=False))
    model.add_argument("--seed", type=_number(int, 0, MAX_SEED), default=defaults["seed"],
                       help="seeds the split, the shuffling and the weights")
    model.add_argument("--limit", type=_number(int, 10), default=defaults["limit"], metavar="N",
                       help="train on a stratified subset of N images (quick trials); all when unset")
    model.add_argument("--precision", choices=PRECISIONS, default=defaults["precision"],
                       help="auto: mixed_bfloat16 where the CPU or a GPU supports it, else float32")
    model.add_argument("--resnet-width", type=_number(int, 1, MAX_RESNET_WIDTH, max_inclusive=True),
                       default=defaults["resnet_width"],
                       help="first-stage channels of resnet18 (64 is the published net)")
    model.add_argument("--deterministic", action="store_true",
                       help="bit-identical results for the same --seed on the same machine "
                            "(tf.config.experimental.enable_op_determinism); can make training slower")

    devices = p.add_argument_group("several GPUs or machines (README: Training on several GPUs or machines)")
    devices.add_argument("--strategy", choices=STRATEGIES, default="auto",
                         help="tf.distribute strategy: one device; mirrored over this machine's GPUs; multiworker "
                              "over the machines in $TF_CONFIG; auto: mirrored when there are 2+ GPUs, else one")
    devices.add_argument("--scale-lr", action="store_true",
                         help="multiply --learning-rate by the number of replicas (--batch-size is per replica)")
    devices.add_argument("--worker-timeout", type=_number(float, 0, MAX_TIMEOUT, min_inclusive=False), default=300.0,
                         metavar="SECONDS", help="multiworker: how long to wait for the other workers, to start "
                                                 "and at every exchange, before giving up")

    files = p.add_argument_group("data and outputs")
    files.add_argument("--data-dir", default=None, metavar="DIR",
                       help="folder with the four .gz files (else $FASHION_MNIST_DIR, data/fashion/, the Keras "
                            "cache, /usr/share/datasets/fashion-mnist/, then a download)")
    files.add_argument("--no-verify", dest="verify", action="store_false",
                       help="skip the checksum check, to train on data you modified on purpose")
    files.add_argument("--out", default=".", metavar="DIR",
                       help="root folder for models/, history/ and tensorboard_logs/")
    files.add_argument("--run-name", type=_run_name, default=None,
                       help="name of this run (default: model, settings and time)")
    files.add_argument("--resume", type=_run_name, default=None, metavar="RUN",
                       help="continue the interrupted run RUN (in --out) from its last completed epoch, with the "
                            "settings in its record; only --out and --data-dir may be given with it")
    sweeps = p.add_argument_group("sweeps")
    sweeps.add_argument("--sweep", action="append", metavar="NAME=V1,V2,...",
                        help="train once per value with everything else equal, e.g. batch_size=64,256,512; "
                             "repeat for a grid. Then compare them in history/<sweep>-compare.png and -results.md")
    return p


def _given_flags(parser, argv):
    """The settings typed on the command line, as opposed to defaults, which argparse alone cannot tell apart.

    argparse only fills in defaults that the namespace lacks, so whatever still holds the marker was not typed.
    A default of None tells "not typed" apart by itself, and must stay None for --sweep, which appends to it.
    """
    not_given = object()
    markers = {name: not_given for name, value in vars(parser.parse_args([])).items() if value is not None}
    parsed = vars(parser.parse_args(argv, argparse.Namespace(**markers)))
    return {name for name, value in parsed.items() if value is not not_given and value is not None}


def parse_config(argv, defaults, description=None):
    """The run's Config, and the --sweep grid: one {hyperparameter: value} dict per run (empty without --sweep).

    For each setting, a flag the user typed wins, then the model's recipe, then the top-of-file defaults.
    """
    parser = build_parser(defaults, description)
    args = vars(parser.parse_args(argv))
    given = _given_flags(parser, argv)
    if args["resume"]:
        conflicting = given - {"resume", *RESUME_MAY_CHANGE}
        if conflicting:
            flags = ", ".join(sorted("--no-verify" if name == "verify" else f"--{name.replace('_', '-')}"
                                     for name in conflicting))
            parser.error(f"--resume continues a run with the settings in its record; drop {flags}")
    # The model's recipe replaces the top-of-file defaults, never a flag the user typed.
    args.update({key: value for key, value in RECIPES.get(args["model"], {}).items() if key not in given})
    grid = _sweep_grid(parser, args.pop("sweep") or [])
    if grid and args["strategy"] == "multiworker":
        parser.error("--sweep runs on one machine; drop --strategy multiworker")
    return Config(**args), grid


def _sweep_grid(parser, specs):
    """Parse each NAME=V1,V2 with the same type and range checks as --NAME; a bad one exits 2 like a bad flag."""
    actions = {dest: action for dest, action in setting_actions_of(parser).items() if dest in SWEEPABLE}
    axes = {}
    for spec in specs:
        key, equals, values = spec.partition("=")
        key = key.strip().replace("-", "_")
        if not equals or not values.strip():
            parser.error(f"argument --sweep: {spec!r} is not NAME=V1,V2,...")
        if key not in actions:
            parser.error(f"argument --sweep: {key!r} is not a hyperparameter (choose from {', '.join(SWEEPABLE)})")
        if key in axes:
            parser.error(f"argument --sweep: {key} is swept twice; list all its values in one --sweep")
        axes[key] = [_sweep_value(parser, actions[key], text.strip()) for text in values.split(",")]
        if len(set(axes[key])) < len(axes[key]):
            parser.error(f"argument --sweep: {key} lists a value twice")
    return [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())] if axes else []


def _sweep_value(parser, action, text):
    try:
        return check_setting(action, text)
    except ValueError as e:
        parser.error(f"argument --sweep: {action.dest}={text}: {e}")


OPTIONAL_SETTINGS = ("limit",)  # None is a value of these: no limit


def check_setting(action, value, typed=False):
    """`value` for the setting of `action` (one of build_parser's), checked as its flag checks what is typed.

    Text (from --sweep) is parsed by the flag's type. With `typed`, the value was read from a JSON run record
    and must already be of the flag's type (a number is not text, a switch is true or false); it then meets the
    same range and choices. Raises ValueError saying what is wrong.
    """
    if isinstance(action, argparse._StoreConstAction):  # noqa: SLF001 - store_true / store_false: a switch
        if type(value) is not bool:
            raise ValueError(f"{value!r:.60} is not true or false")
        return value
    if value is None and action.dest in OPTIONAL_SETTINGS:
        return None
    kind = getattr(action.type, "__name__", "str") if action.type else "str"
    if typed:
        expected = {"int": (int,), "float": (int, float)}.get(kind, (str,))
        if type(value) not in expected:
            raise ValueError(f"{value!r:.60} is not {'an' if kind == 'int' else 'a'} {kind}")
        value = value if kind == "str" else repr(value)
    if action.type:
        try:
            value = action.type(value)
        except argparse.ArgumentTypeError as e:
            raise ValueError(str(e)) from None
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"{value!r:.60} is not one of {', '.join(map(str, action.choices))}")
    return value


def setting_actions_of(parser):
    """{setting: its argparse action}, for check_setting."""
    return {action.dest: action for action in parser._actions}  # noqa: SLF001
