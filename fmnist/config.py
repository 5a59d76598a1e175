"""The settings of one run, each declared once in SETTINGS: its flag, type, range, choices, help, and whether
sweeps vary it and the run record keeps it. The parser, the Config, the sweep grid and the checks on a
resumed run's record are all derived from that one list.

The hyperparameters' defaults live in the block at the top of fashion_mnist.py, where users edit them; adding one
means a line there and a Setting here. Validation happens here, in argparse, so that a bad value exits 2 with a
clear message before TensorFlow loads.
"""

import argparse
import itertools
import math
import re
from dataclasses import dataclass

from fmnist.data import SHIFTING
from fmnist.evaluation import TTA_HELP, TTA_VIEWS
from fmnist.models import MODELS, RECIPES

TTA_CHOICES = tuple(TTA_VIEWS)


class Number:
    """An argparse type that parses `kind` ("int" or "float") and checks its range, with a message naming it."""

    def __init__(self, kind, minimum=None, maximum=None, min_inclusive=True):
        self.kind, self.minimum, self.maximum, self.min_inclusive = kind, minimum, maximum, min_inclusive
        self.__name__ = kind.__name__  # argparse names the type in its messages

    def __call__(self, text):
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {self.kind.__name__}") from None
        return self.check(value)

    def check(self, value):
        """`value` if it is a number of the right kind within the range, else ArgumentTypeError."""
        kinds = (int,) if self.kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise argparse.ArgumentTypeError(f"{value!r} is not a valid {self.kind.__name__}")
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an int too large for a float: 400 digits of epochs
            raise argparse.ArgumentTypeError(f"{str(value)[:20]}... is far out of range") from None
        if not finite:
            raise argparse.ArgumentTypeError(f"{value!r} is not a finite number")
        too_low = self.minimum is not None and (value < self.minimum if self.min_inclusive else value <= self.minimum)
        too_high = self.maximum is not None and value >= self.maximum
        if too_low or too_high:
            low = f"{'>=' if self.min_inclusive else '>'} {self.minimum}" if self.minimum is not None else ""
            high = f"< {self.maximum}" if self.maximum is not None else ""
            bounds = " and ".join(filter(None, [low, high]))
            raise argparse.ArgumentTypeError(f"{value} is out of range (must be {bounds})")
        return self.kind(value)


MAX_RUN_NAME = 100  # file systems allow 255 bytes a name; a run's files add up to 25 to it


def run_name(text):
    if not isinstance(text, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", text):
        raise argparse.ArgumentTypeError(f"{text!r:.80} is not usable as a file name (use letters, digits, . _ -)")
    if len(text) > MAX_RUN_NAME:
        raise argparse.ArgumentTypeError(f"{text[:20]}... is {len(text)} characters long; at most {MAX_RUN_NAME}")
    return text


TRAINING, DEVICES, FILES = ("model and training", "several GPUs or machines (README: Training on several GPUs or "
                            "machines)", "data and outputs")


@dataclass(frozen=True)
class Setting:
    """One setting of a run. A hyperparameter takes its default from the top of fashion_mnist.py, can be swept,
    and is kept in the run record; other settings are kept in the record when `recorded`."""

    name: str
    help: str
    type: object = None  # str -> value (raising argparse.ArgumentTypeError); bool makes an on/off flag
    choices: tuple | None = None
    hyperparameter: bool = False
    default: object = None  # for settings that are not hyperparameters
    recorded: bool = True  # in the record's "hyperparameters", and taken from it by --resume
    optional: bool = False  # None is a valid value ("unset")
    unset: str | None = None  # what None means, as --help and TensorBoard's HPARAMS show it
    group: str = TRAINING
    metavar: str | None = None

    @property
    def flag(self):
        dashed = self.name.replace("_", "-")
        return f"--no-{dashed}" if self.type is bool and self.default is True else f"--{dashed}"

    def check(self, value):
        """`value` if it is valid for this setting (the same checks as its flag), else ArgumentTypeError."""
        if value is None and self.optional:
            return value
        if self.type is bool:
            if not isinstance(value, bool):
                raise argparse.ArgumentTypeError(f"{value!r} is not true or false")
            return value
        if self.choices is not None:
            if not isinstance(value, str) or value not in self.choices:
                raise argparse.ArgumentTypeError(f"{value!r} is not one of {', '.join(self.choices)}")
            return value
        return self.type.check(value) if isinstance(self.type, Number) else self.type(value)


SETTINGS = (
    Setting("model", f"architecture to train; {', '.join(RECIPES)} train with their own recipes (below)",
            choices=tuple(sorted(MODELS)), hyperparameter=True),
    Setting("epochs", "maximum epochs", Number(int, 1), hyperparameter=True),
    Setting("batch_size", "images per step", Number(int, 1), hyperparameter=True),
    Setting("learning_rate", "peak learning rate", Number(float, 0, min_inclusive=False), hyperparameter=True),
    Setting("schedule", "learning-rate schedule", choices=("constant", "cosine"), hyperparameter=True),
    Setting("warmup_epochs", "epochs of linear warm-up (cosine schedule)", Number(float, 0), hyperparameter=True),
    Setting("weight_decay", "AdamW's decoupled weight decay, applied as a shrink of weight decay x learning rate a "
            "step; 0 trains with Adam", Number(float, 0), hyperparameter=True),
    Setting("augment", "training-time augmentation: horizontal flips, then also shifts (by up to --shift pixels), "
            "then also random erasing", choices=("none", "flip", *SHIFTING), hyperparameter=True),
    Setting("shift", "the most pixels --augment flip-shift and flip-shift-erase move an image each way",
            Number(int, 1, 4), hyperparameter=True, metavar="PIXELS"),
    Setting("tta", f"{TTA_HELP}; shifts suit a net trained with --augment that shifts too", choices=TTA_CHOICES,
            hyperparameter=True),
    Setting("val_fraction", "share of the 60,000 training images held out for validation",
            Number(float, 0, 1, min_inclusive=False), hyperparameter=True),
    Setting("patience", "early stopping: epochs without a lower validation loss; off: all epochs run",
            Number(int, 1), hyperparameter=True, optional=True, unset="off"),
    Setting("keep", "the model a run keeps, saves and tests: the epoch with the lowest validation loss, or the "
            "last one", choices=("best", "last"), hyperparameter=True),
    Setting("seed", "seeds the split, the shuffling and the weights", Number(int, 0, 2**32), hyperparameter=True),
    Setting("limit", "train on N of the training images, every class in proportion (quick trials); the "
            "validation set (--val-fraction) and the 10,000 test images stay whole, so scores compare across "
            "limits; all when unset", Number(int, 10),
            hyperparameter=True, optional=True, unset="all", metavar="N"),
    Setting("precision", "auto: mixed_bfloat16 on a GPU with bf16 tensor cores (Ampere or later) or where the CPU "
            "computes bf16 faster than float32 (AMX, AMD Zen 4+), else float32",
            choices=("auto", "float32", "mixed_bfloat16", "mixed_float16"), hyperparameter=True),
    Setting("resnet_width", "first-stage channels of resnet18 (64 is the published net)", Number(int, 1, 1025),
            hyperparameter=True),
    Setting("deterministic", "bit-identical results for the same --seed on the same machine "
            "(tf.config.experimental.enable_op_determinism); can make training slower", bool, default=False),
    Setting("fast_ops", "train with Keras's own Adam, Dropout and BatchNormalization ops instead of the project's "
            "faster ones (fmnist/speed/fast_ops.py)", bool, default=True),
    Setting("strategy", "tf.distribute strategy: one device; mirrored over this machine's GPUs; multiworker over "
            "the machines in $TF_CONFIG; auto: mirrored when there are 2+ GPUs, else one",
            choices=("auto", "one", "mirrored", "multiworker"), default="auto", group=DEVICES),
    Setting("scale_lr", "multiply --learning-rate by the number of replicas (--batch-size is per replica)", bool,
            default=False, group=DEVICES),
    # faulthandler's watchdog, which enforces it, takes at most about 11 days.
    Setting("worker_timeout", "multiworker: how long to wait for the other workers, to start and at every "
            "exchange, before giving up", Number(float, 0, 10**6, min_inclusive=False), default=300.0,
            recorded=False, group=DEVICES, metavar="SECONDS"),
    Setting("data_dir", "folder with the four .gz files (else $FASHION_MNIST_DIR, data/fashion/, the Keras cache, "
            "/usr/share/datasets/fashion-mnist/, then a download)", str, optional=True, recorded=False,
            group=FILES, metavar="DIR"),
    Setting("verify", "skip the checksum check, to train on data you modified on purpose", bool, default=True,
            group=FILES),
    Setting("out", "root folder for models/, history/ and tensorboard_logs/", str, default=".", recorded=False,
            group=FILES, metavar="DIR"),
    Setting("run_name", "name of this run (default: model, settings and time)", run_name, optional=True,
            recorded=False, group=FILES),
    Setting("resume", "continue the interrupted run RUN (in --out) from its last completed epoch, with the "
            "settings in its record; only --out and --data-dir may be given with it", run_name, optional=True,
            recorded=False, group=FILES, metavar="RUN"),
)
# Where the files are may differ when a run is resumed; every recorded setting comes from the run's record.
RESUME_MAY_CHANGE = ("data_dir", "out")


class Config:
    """The settings of one run, read-only: one attribute per Setting of SETTINGS (config.epochs,
    config.batch_size...). parse_config makes it; `replace` gives a copy with some settings changed."""

    def __init__(self, settings=SETTINGS, **values):
        mismatch = set(values) ^ {s.name for s in settings}
        if mismatch:
            raise TypeError(f"a Config takes exactly the settings of SETTINGS; not {sorted(mismatch)}")
        self.__dict__.update(values, SETTINGS=settings)

    def __setattr__(self, name, value):
        raise AttributeError(f"a Config is read-only: use config.replace({name}=...)")

    def values(self):
        return {s.name: getattr(self, s.name) for s in self.SETTINGS}

    def replace(self, **changes):
        return Config(self.SETTINGS, **{**self.values(), **changes})

    def hyperparameters(self):
        """The recorded settings: those that shape the result (not where files go), for the run record."""
        return {s.name: getattr(self, s.name) for s in self.SETTINGS if s.recorded}

    def __eq__(self, other):
        return isinstance(other, Config) and self.values() == other.values()

    __hash__ = None

    def __repr__(self):
        return "Config(" + ", ".join(f"{name}={value!r}" for name, value in self.values().items()) + ")"


def hyperparameter_defaults(namespace, settings=SETTINGS):
    """{name: value} from the top-of-file block (`namespace`, the script's globals) for every hyperparameter.
    A block constant without a Setting, or the reverse, is a programming error, caught at start-up."""
    block = {name.lower(): value for name, value in namespace.items() if name.isupper()}
    declared = {s.name for s in settings if s.hyperparameter}
    if set(block) != declared:
        raise RuntimeError(f"the hyperparameter block and fmnist/config.py SETTINGS disagree: "
                           f"{sorted(set(block) ^ declared)}")
    return block


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except where the help text already does or where "(default: None)" would say nothing."""

    def _get_help_string(self, action):
        if action.default is None or isinstance(action.default, bool) or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser(defaults, description=None, settings=SETTINGS):
    """The training command's parser: one flag per setting, in groups, plus --sweep."""
    p = argparse.ArgumentParser(description=description, formatter_class=_HelpFormatter, allow_abbrev=False)
    groups = {}
    for s in settings:
        group = groups.get(s.group) or groups.setdefault(s.group, p.add_argument_group(s.group))
        add_flag(group, s, defaults[s.name] if s.hyperparameter else s.default)
    p.add_argument_group("sweeps").add_argument(
        "--sweep", action="append", metavar="NAME=V1,V2,...",
        help="train once per value with everything else equal, e.g. batch_size=64,256,512; repeat for a grid "
             "(model=... trains each net with the recipe of --model). "
             "Then compare them in history/<sweep>-compare.png and -results.md")
    return p


def add_flag(parser, setting, default=None):
    """The flag of one setting (another command shares --data-dir and --no-verify with training this way)."""
    s = setting
    default = s.default if default is None else default
    if s.type is bool:
        parser.add_argument(s.flag, dest=s.name, action="store_false" if default else "store_true", help=s.help)
        return
    help_text = f"{s.help} {recipe_note(s, default)}" if any(s.name in r for r in RECIPES.values()) else s.help
    parser.add_argument(s.flag, dest=s.name, type=None if s.choices else s.type, choices=s.choices,
                        default=default, metavar=s.metavar, help=help_text)


def recipe_note(setting, default):
    """`(default: 20; fast: 6; balanced: 15; best: 78; resnet20: 55)`, for --help."""
    notes = [f"default: {default}"] + [f"{model}: {setting.unset if r[setting.name] is None else r[setting.name]}"
                                        for model, r in RECIPES.items() if setting.name in r]
    return f"({'; '.join(notes)})"


SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}


def _given_flags(parser, argv):
    """The settings typed on the command line, as opposed to defaults, which argparse alone cannot tell apart.

    argparse only fills in defaults that the namespace lacks, so whatever still holds the marker was not typed.
    A default of None tells "not typed" apart by itself, and must stay None for --sweep, which appends to it.
    """
    not_given = object()
    markers = {name: not_given for name, value in vars(parser.parse_args([])).items() if value is not None}
    parsed = vars(parser.parse_args(argv, argparse.Namespace(**markers)))
    return {name for name, value in parsed.items() if value is not not_given and value is not None}


def parse_config(argv, defaults, description=None, settings=SETTINGS):
    """The run's Config, and the --sweep grid: one {hyperparameter: value} dict per run (empty without --sweep).

    For each setting, a flag the user typed wins, then the model's recipe, then the top-of-file defaults.
    """
    parser = build_parser(defaults, description, settings)
    args = vars(parser.parse_args(argv))
    given = _given_flags(parser, argv)
    if args["resume"]:
        conflicting = given - {"resume", *RESUME_MAY_CHANGE}
        if conflicting:
            flags = {s.name: s.flag for s in settings} | {"sweep": "--sweep"}
            parser.error(f"--resume continues a run with the settings in its record; drop "
                         f"{', '.join(sorted(flags[name] for name in conflicting))}")
    # The model's recipe replaces the top-of-file defaults, never a flag the user typed.
    args.update({key: value for key, value in RECIPES.get(args["model"], {}).items() if key not in given})
    grid = _sweep_grid(parser, args.pop("sweep") or [], settings)
    if grid and args["strategy"] == "multiworker":
        parser.error("--sweep runs on one machine; drop --strategy multiworker")
    return Config(settings, **args), grid


def check_settings(config, values):
    """`config` with `values` ({name: value}, e.g. from a run record) replacing its settings, each checked as its
    flag would be; a ValueError names the first bad one."""
    by_name = {s.name: s for s in config.SETTINGS}
    checked = {}
    for name, value in values.items():
        if name not in by_name:
            raise ValueError(f"{name!r} is not a setting")
        try:
            checked[name] = by_name[name].check(value)
        except argparse.ArgumentTypeError as e:
            raise ValueError(f"{name}: {e}") from None
    return config.replace(**checked)


def _sweep_grid(parser, specs, settings):
    """Parse each NAME=V1,V2 with the same type and range checks as --NAME; a bad one exits 2 like a bad flag."""
    sweepable = {s.name: s for s in settings if s.hyperparameter}
    axes = {}
    for spec in specs:
        key, equals, values = spec.partition("=")
        key = key.strip().replace("-", "_")
        if not equals or not values.strip():
            parser.error(f"argument --sweep: {spec!r} is not NAME=V1,V2,...")
        if key not in sweepable:
            parser.error(f"argument --sweep: {key!r} is not a hyperparameter (choose from {', '.join(sweepable)})")
        if key in axes:
            parser.error(f"argument --sweep: {key} is swept twice; list all its values in one --sweep")
        axes[key] = [_sweep_value(parser, sweepable[key], text.strip()) for text in values.split(",")]
        if len(set(axes[key])) < len(axes[key]):
            parser.error(f"argument --sweep: {key} lists a value twice")
    return [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())] if axes else []


def _sweep_value(parser, setting, text):
    try:
        return setting.check(text if setting.choices else setting.type(text))
    except argparse.ArgumentTypeError as e:
        parser.error(f"argument --sweep: {setting.name}={text}: {e}")
