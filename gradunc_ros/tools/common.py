"""Argument types, options and error handling the command-line tools share.

A user's mistake is caught before long work starts and said in one line with
a non-zero exit code: argument types check values when the command line is
parsed (argparse then prints ``prog: error: argument --x: reason``), and
``one_line_errors`` turns the errors of the work itself into one line.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from gradunc_ros.deploy.runtimes import BACKENDS
from gradunc_ros.errors import first_line  # noqa: F401 - the tools import it from here
from gradunc_ros.models.preprocess import parse_size
from gradunc_ros.uncertainty import DEFAULT_SCORE, SETTING_FIELDS, HeadSettings, SettingField, sweep
from gradunc_ros.uncertainty.norms import P_MAX, P_MIN


class ToolParser(argparse.ArgumentParser):
    """argparse, with a mistake said in one line (``prog: error: ...``, exit code 2), without the usage
    block; ``--help`` shows the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


# The largest network input the tools accept: 8K UHD, as the node's max_image_pixels.  Beyond it one
# forward pass of even the small shipped model needs tens of GB.
MAX_INPUT_PIXELS = 7680 * 4320


def size_argument(text: str) -> tuple[int, int]:
    """WIDTHxHEIGHT on the command line, (height, width) inside; at most MAX_INPUT_PIXELS."""
    try:
        height, width = parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if height * width > MAX_INPUT_PIXELS:
        raise argparse.ArgumentTypeError(
            f"{text} is {height * width:,} pixels, more than the {MAX_INPUT_PIXELS:,} (8K UHD) a network input may have"
        )
    return height, width


def _number(kind: type, text: str, low: float, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not value >= low:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
    return value


def positive_int(text: str) -> int:
    return _number(int, text, 1, "a whole number >= 1")


def non_negative_int(text: str) -> int:
    return _number(int, text, 0, "a whole number >= 0")


def positive_float(text: str) -> float:
    value = _number(float, text, 0.0, "a number > 0")
    if value == 0.0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(float, text, 0.0, "a number >= 0")
    if value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def p_value(text: str) -> float:
    """The exponent of the gradient norm, in the range the head and the node accept."""
    value = _number(float, text, P_MIN, f"a number from {P_MIN:g} to {P_MAX:g}")
    if value > P_MAX:
        raise argparse.ArgumentTypeError(f"expected a number from {P_MIN:g} to {P_MAX:g}, got {text}")
    return value


def _writable_folder(folder: Path) -> None:
    """OSError unless a file can be created in ``folder`` (also as root on a read-only file system)."""
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".gradunc_write_test_"):
        pass


def output_folder(text: str) -> Path:
    """A folder for outputs: created now (parents too) and checked writable, before any work."""
    path = Path(text)
    try:
        path.mkdir(parents=True, exist_ok=True)
        _writable_folder(path)
    except FileExistsError:
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder") from None
    except OSError as error:
        raise argparse.ArgumentTypeError(f"cannot write to {text}: {error.strerror or error}") from None
    return path


def output_file(text: str) -> Path:
    """A file to write: its folder must exist and be writable; an existing file is replaced."""
    path = Path(text)
    parent = path.parent
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder, not a file")
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"the folder {parent} of {text} does not exist")
    try:
        _writable_folder(parent)
    except OSError as error:
        raise argparse.ArgumentTypeError(f"cannot write to {parent}: {error.strerror or error}") from None
    return path


def new_bag(text: str) -> Path:
    """A bag to create: it must not exist yet (rosbag2 refuses to write over one), its folder must."""
    path = Path(text)
    if path.exists():
        raise argparse.ArgumentTypeError(f"{text} already exists: give a new bag path (or remove the old bag)")
    return output_file(text)


def results_folder(text: str) -> Path:
    """A results folder: new (its parent must exist), or one that gradunc-bag evaluate wrote (to resume)."""
    from gradunc_ros.fleet.results import refusal

    path = Path(text)
    reason = refusal(path)
    if reason:
        raise argparse.ArgumentTypeError(reason)
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"the folder {path.parent} of {text} does not exist")
    return path


def existing_folder(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is not a folder" if path.exists() else f"{text} does not exist")
    return path


def _setting_type(field: SettingField):
    return p_value if field.choices is None else str


def add_score_options(parser: argparse.ArgumentParser) -> None:
    """One option per score setting (``--score``, ``--p``, ``--mode``, ``--resolution``, ``--layer``,
    ``--gradient-of``), made from the one table of settings, with the node's defaults."""
    for field in SETTING_FIELDS:
        default = getattr(DEFAULT_SCORE, field.name)
        parser.add_argument(
            "--" + field.name.replace("_", "-"),
            type=_setting_type(field),
            default=default,
            choices=field.choices,
            help=f"{field.help} (default: {default:g})"
            if field.choices is None
            else f"{field.help} (default: {default})",
        )


def settings_from(args: argparse.Namespace) -> HeadSettings:
    """The HeadSettings of the options ``add_score_options`` made."""
    return HeadSettings(**{field.name: getattr(args, field.name) for field in SETTING_FIELDS})


def add_sweep_options(
    parser: argparse.ArgumentParser, defaults: dict[str, list], aliases: dict[str, str] | None = None
) -> None:
    """One list option per score setting (``--scores``, ``--ps``, ``--modes``, ``--resolutions``,
    ``--layers``, ``--gradients-of``) for the tools that compute many settings at once; ``defaults`` by
    setting name; ``aliases``: a further option string per setting name (e.g. ``--p`` for ``--ps``)."""
    for field in SETTING_FIELDS:
        names = ["--" + field.sweep.replace("_", "-")]
        if aliases and field.name in aliases:
            names.append(aliases[field.name])
        parser.add_argument(
            *names,
            dest=field.sweep,
            nargs="+",
            type=_setting_type(field),
            default=defaults.get(field.name, [getattr(DEFAULT_SCORE, field.name)]),
            choices=field.choices,
            help=f"{field.name} values to compute: {field.help}",
        )


def sweep_from(args: argparse.Namespace) -> list[HeadSettings]:
    """Every valid combination of the values ``add_sweep_options`` took (baselines once each)."""
    return sweep({field.name: getattr(args, field.sweep) for field in SETTING_FIELDS})


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--model, --weights, --card, --model-path, --num-classes, --device, --input-size: what ModelRequest and
    the pipeline take."""
    parser.add_argument(
        "--model",
        help="a registered architecture (listed below) or a factory package.module:function returning an "
        "nn.Module (default: the shipped model)",
    )
    parser.add_argument(
        "--weights",
        help="weights file, .safetensors or .pth (default: the shipped weights of --model, or a factory's own; "
        "'random': random weights, for tests)",
    )
    parser.add_argument(
        "--card", help="model card YAML: classes, colours, normalisation, ... (default: <weights>.card.yaml beside "
        "the weights, if any)"
    )  # fmt: skip
    parser.add_argument("--model-path", help="folder to import a factory's module from (default: the environment)")
    parser.add_argument(
        "--num-classes",
        type=positive_int,
        help="class count of a .pth without metadata (default: the weights' or model's)",
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    parser.add_argument("--input-size", type=size_argument, help="network input WIDTHxHEIGHT (default: the model's)")
    parser.add_argument(
        "--backend",
        default="torch",
        choices=BACKENDS,
        help="what runs the model: torch (PyTorch), or onnxruntime / openvino with an .onnx file as --weights "
        "(gradunc-export --onnx writes one) (default: torch)",
    )
    parser.add_argument(
        "--precision",
        default="float32",
        choices=("float32", "float16", "bfloat16"),
        help="network precision: torch float32, float16 or bfloat16; openvino float32 or bfloat16 (where the CPU "
        "has it); onnxruntime float32 (default: float32; scores are float32 either way)",
    )
    parser.add_argument(
        "--threads", type=non_negative_int, default=0, help="CPU threads of the backend (default 0: its own choice)"
    )


def request_from(args: argparse.Namespace):
    """The ModelRequest of the options ``add_model_options`` made."""
    from ..assembly import ModelRequest

    if args.backend == "torch" and args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return ModelRequest(
        args.model, args.weights, args.card, args.model_path, args.num_classes, args.backend, args.threads
    )


def load_from(args: argparse.Namespace):
    """The model the options of ``add_model_options`` name."""
    return request_from(args).load()


def assemble_from(
    args: argparse.Namespace, settings: HeadSettings, prog: str, threshold: float | None = None, masks: bool = True
):
    """Model, pipeline and threshold from a tool's options (``assembly.assemble``); what the model card did
    not say, and (for a tool that makes masks) a threshold warning, said once on stderr."""
    from ..assembly import assemble

    assembly = assemble(
        request_from(args), settings, device=args.device, input_size=args.input_size, threshold=threshold,
        precision=args.precision,
    )  # fmt: skip
    say_assumed(assembly.loaded, lambda text: print(f"{prog}: {text}", file=sys.stderr))
    if masks and assembly.threshold.warning:
        print(f"{prog}: {assembly.threshold.warning}", file=sys.stderr)
    return assembly


def assemble_sweep(args: argparse.Namespace, wanted: list[HeadSettings], prog: str, start: HeadSettings | None = None):
    """``assemble_from`` for the tools that compute many settings at once (gradunc-eval, gradunc-calibrate):
    no mask; every setting of ``wanted`` the loaded model cannot compute is refused before the run."""
    assembly = assemble_from(args, start or wanted[0], prog, masks=False)
    for one in wanted:
        assembly.pipeline.head.check_supported(one)
    return assembly


def say_assumed(loaded, say: Callable[[str], None]) -> None:
    """One line naming what no model card said and was assumed (class names, colours, normalisation)."""
    if loaded.assumed:
        say(f"no model card says the {', '.join(loaded.assumed)}: assumed (a card: --card, or <weights>.card.yaml)")


def one_line_errors(prog: str, work: Callable[[], int]) -> int:
    """Run ``work``; a failure a user can act on (bad file, out of memory, ...) is one line and exit 1.
    A process whose ROS teardown hung exits here with the code (``processes.leave``)."""
    from gradunc_ros.processes import leave

    return leave(_code_of(prog, work))


def _code_of(prog: str, work: Callable[[], int]) -> int:
    from gradunc_ros.pipeline import is_out_of_memory

    try:
        return work()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"{prog}: out of memory (try a smaller --input-size)", file=sys.stderr)
        return 1
    except (OSError, KeyError, ValueError, RuntimeError) as error:
        if is_out_of_memory(error):
            print(f"{prog}: out of memory (try a smaller --input-size): {first_line(error)}", file=sys.stderr)
        else:
            print(f"{prog}: {first_line(error)}", file=sys.stderr)
        return 1
