"""gradunc-selfcheck: prove on this machine that the closed forms are the gradients they claim to be.

Builds small random layers of every supported kind, computes the per-pixel
gradient norm (of the weights, the bias, and both) by autograd and by the closed form, and prints the largest
difference of their logs (= relative error of the norm).  Run it on a
vehicle's computer after installing, with --device cuda for its GPU.
Where Triton runs (CUDA), the fused head's kernel is checked the same way:
in float32, against the float64 autograd gradient, within --fused-tolerance.
With --backends, the shipped model is also run in every backend and
precision this machine has (PyTorch float32, bfloat16, float16; ONNX Runtime
float32 and OpenVINO float32 and bfloat16 through gradunc-export's graph) and
each one's label agreement and largest log-score difference to PyTorch
float32 is printed: what a lower precision costs here.
Exit code 0 only when every case is within its tolerance.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn
from torch.func import functional_call

from gradunc_ros.tools.common import ToolParser, first_line
from gradunc_ros.uncertainty.autograd_reference import (
    autograd_log_gradient_norm,
    autograd_log_pgn,
    largest_log_difference,
)
from gradunc_ros.uncertainty.fused import fused_scores, triton_runs_on
from gradunc_ros.uncertainty.pgn import LABELS, PgnOptions, pgn_for_layer, pgn_penultimate

DEFAULT_P = (0.1, 0.3, 0.5, 1.0, 2.0)

Case = tuple[str, Callable[[float, str], tuple[Tensor, Tensor]]]


PARAMETERS_OF = {"weights": ("weight",), "bias": ("bias",), "layer": ("weight", "bias")}


def _autograd(layer: nn.Module, x: Tensor, p: float, label: str, gradient_of: str, dim: int = 1) -> Tensor:
    """The per-pixel autograd gradient norm over the parameters ``gradient_of`` names, in float64."""
    parameters = {name: getattr(layer, name) for name in PARAMETERS_OF[gradient_of]}
    return autograd_log_gradient_norm(lambda params: functional_call(layer, params, (x,)), parameters, p, label, dim)


def _layer_case(layer: nn.Module, x: Tensor, gradient_of: str) -> Callable[[float, str], tuple[Tensor, Tensor]]:
    def run(p: float, label: str) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            out = layer(x)
        dim = -1 if isinstance(layer, nn.Linear) else 1
        closed = pgn_for_layer(layer, torch.softmax(out, dim=dim), x, p, PgnOptions(label, gradient_of=gradient_of))
        return closed, _autograd(layer, x, p, label, gradient_of, dim)

    return run


def _fused_case(layer: nn.Module, x: Tensor, gradient_of: str) -> Callable[[float, str], tuple[Tensor, Tensor]]:
    """The fused kernel in float32 against autograd in float64 on the same weights and input."""

    def run(p: float, label: str) -> tuple[Tensor, Tensor]:
        _, fused = fused_scores(layer.float(), x.float(), p, PgnOptions(label, gradient_of=gradient_of))
        return fused, _autograd(layer.double(), x, p, label, gradient_of)

    return run


def _each_gradient(name: str, layer: nn.Module, x: Tensor, case) -> Iterator[Case]:
    for gradient_of in PARAMETERS_OF:
        yield name + ("" if gradient_of == "weights" else f", {gradient_of}"), case(layer, x, gradient_of)


def fused_cases(device: torch.device, seed: int) -> Iterator[Case]:
    """The last layers the fused Triton head computes (empty where Triton cannot run)."""
    if not triton_runs_on(device):
        return
    generator = torch.Generator(device=device).manual_seed(seed)
    torch.manual_seed(seed)
    layers = {
        "fused conv 1x1": (nn.Conv2d(40, 9, 1), (2, 40, 5, 6)),
        "fused transposed 2x2/2": (nn.ConvTranspose2d(16, 9, 2, stride=2), (2, 16, 3, 4)),
    }
    for name, (layer, shape) in layers.items():
        x = torch.randn(*shape, dtype=torch.float64, device=device, generator=generator)
        yield from _each_gradient(name, layer.to(device=device, dtype=torch.float64), x, _fused_case)


def _penultimate_case(
    device: torch.device, generator: torch.Generator
) -> Callable[[float, str], tuple[Tensor, Tensor]]:
    tail = nn.Sequential(nn.Conv2d(6, 7, 3, padding=1, bias=False), nn.BatchNorm2d(7), nn.ReLU(), nn.Conv2d(7, 5, 1))
    tail = tail.to(device=device, dtype=torch.float64).eval()
    with torch.no_grad():
        tail[1].running_mean.normal_(generator=generator)
        tail[1].running_var.uniform_(0.5, 2.0, generator=generator)
        tail[1].weight.normal_(generator=generator)
    x = torch.randn(2, 6, 5, 4, dtype=torch.float64, device=device, generator=generator)

    def run(p: float, label: str) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            features = tail[:3](x)
            probs = torch.softmax(tail[3](features), dim=1)
        closed = pgn_penultimate(probs, features, x, p, PgnOptions(label), conv=tail[0], bn=tail[1], last=tail[3])  # type: ignore[arg-type]
        truth = autograd_log_pgn(lambda w: functional_call(tail, {"0.weight": w}, (x,)), tail[0].weight, p, label)
        return closed, truth

    return run


def cases(device: torch.device, seed: int) -> Iterator[Case]:
    """Every layer kind the head supports, with random weights and inputs."""
    generator = torch.Generator(device=device).manual_seed(seed)
    torch.manual_seed(seed)

    def features(*shape: int) -> Tensor:
        return torch.randn(*shape, dtype=torch.float64, device=device, generator=generator)

    layers = {
        "conv 1x1": (nn.Conv2d(8, 5, 1), features(2, 8, 4, 5)),
        "conv 3x3 dilated": (nn.Conv2d(6, 5, 3, padding=2, dilation=2), features(2, 6, 5, 4)),
        "conv 3x3 reflect": (nn.Conv2d(6, 5, 3, padding=1, padding_mode="reflect"), features(1, 6, 4, 4)),
        "transposed conv 2x2/2": (nn.ConvTranspose2d(6, 5, 2, stride=2), features(2, 6, 3, 4)),
        "linear on tokens": (nn.Linear(8, 5), features(2, 7, 8)),
    }
    for name, (layer, x) in layers.items():
        yield from _each_gradient(name, layer.to(device=device, dtype=torch.float64), x, _layer_case)
    yield "penultimate conv", _penultimate_case(device, generator)


def _largest_error(checks: Iterator[Case], p_values: list[float]) -> float | None:
    """Print a row of errors per case and label; the largest, or None when there was no case."""
    worst = None
    for name, run in checks:
        for label in LABELS:
            errors = [largest_log_difference(*run(p, label)) for p in p_values]
            worst = max(worst or 0.0, *errors)
            print(f"{name:32} {label:8} " + " ".join(f"{e:<10.2e}" for e in errors))
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = ToolParser(prog="gradunc-selfcheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="torch device to check on, e.g. cpu or cuda (default: cpu)")
    parser.add_argument("--p", type=float, nargs="+", default=list(DEFAULT_P), help="exponents to check")
    parser.add_argument("--tolerance", type=float, default=1e-5, help="largest allowed relative error of the norm")
    parser.add_argument(
        "--fused-tolerance",
        type=float,
        default=1e-4,
        help="largest allowed relative error of the fused kernel (float32)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random layers and inputs")
    parser.add_argument(
        "--backends", action="store_true", help="also: every backend and precision here against PyTorch float32"
    )
    args = parser.parse_args(argv)
    try:
        device = torch.device(args.device)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as error:
        print(f"gradunc-selfcheck: device {args.device!r} is not usable here: {error}", file=sys.stderr)
        return 2
    print(f"{'layer, gradient of':32} {'label':8} " + " ".join(f"p={p:<8g}" for p in args.p))
    worst = _largest_error(cases(device, args.seed), args.p)
    worst_fused = _largest_error(fused_cases(device, args.seed), args.p)
    failed = worst > args.tolerance or (worst_fused is not None and worst_fused > args.fused_tolerance)
    verdict = "FAIL" if failed else "OK"
    print(f"{verdict}: largest relative error {worst:.2e} (tolerance {args.tolerance:.0e}) on {device}")
    if worst_fused is None:
        print("fused Triton head: not checked here (it needs CUDA and the triton package)")
    else:
        print(f"fused Triton head: largest relative error {worst_fused:.2e} (tolerance {args.fused_tolerance:.0e})")
    if args.backends:
        precision_report(device, args.seed)
    return 1 if failed else 0


def precision_report(device: torch.device, seed: int, size: tuple[int, int] = (240, 320)) -> None:
    """The shipped model with the default score in each backend and precision this machine runs, against
    PyTorch float32 on the same frames: label agreement and the largest |log score difference|."""
    import tempfile
    from pathlib import Path

    import numpy as np

    from gradunc_ros.assembly import ModelRequest
    from gradunc_ros.deploy.runtimes import PRECISIONS
    from gradunc_ros.models import load_model
    from gradunc_ros.pipeline import SegmentationPipeline
    from gradunc_ros.uncertainty import DEFAULT_SCORE

    rng = np.random.default_rng(seed)
    frames = [np.repeat(np.repeat(rng.integers(0, 256, (size[0] // 8, size[1] // 8, 3), dtype=np.uint8), 8, 0), 8, 1)
              for _ in range(2)]  # fmt: skip
    reference = SegmentationPipeline(load_model(), DEFAULT_SCORE, device=str(device))
    expected = [reference.predict(frame) for frame in frames]
    print(
        f"backends and precisions against PyTorch float32 ({DEFAULT_SCORE.name}, shipped model, {len(frames)} frames):"
    )
    runs = [("torch", precision) for precision in ("bfloat16", "float16")]
    with tempfile.TemporaryDirectory(prefix="gradunc_selfcheck_") as folder:
        try:
            from gradunc_ros.deploy.onnx_export import export_onnx, installed_runtimes

            path = Path(folder) / "shipped.onnx"
            export_onnx(load_model(), DEFAULT_SCORE, path, [size], frames[:1])
            runs += [(runtime, precision) for runtime in installed_runtimes() for precision in PRECISIONS[runtime]]
        except (ImportError, ValueError) as error:
            print(f"  ONNX backends: not checked ({first_line(error)})")
        for backend, precision in runs:
            try:
                if backend == "torch":
                    pipeline = SegmentationPipeline(
                        load_model(), DEFAULT_SCORE, device=str(device), precision=precision
                    )
                else:
                    loaded = ModelRequest(weights=str(path), backend=backend).load(precision)
                    pipeline = SegmentationPipeline(loaded, DEFAULT_SCORE)
                got = [pipeline.predict(frame) for frame in frames]
            except (RuntimeError, ValueError) as error:
                print(f"  {backend:12} {precision:9} not run here: {first_line(error)}")
                continue
            agreement = np.mean([(g.labels == e.labels).mean() for g, e in zip(got, expected, strict=True)])
            difference = max(float(np.abs(g.score - e.score).max()) for g, e in zip(got, expected, strict=True))
            print(f"  {backend:12} {precision:9} labels {100 * agreement:7.3f} %   max |log score difference| "
                  f"{difference:.2e}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
