"""Head overhead: forward pass alone vs forward pass + gradient-uncertainty head (prints a table).

    .venv/bin/python benchmarks/head_overhead.py [--models erfnet,deeplabv3plus_resnet50,deeplabv3plus_wrn38
        --sizes 480x360,1024x512,2048x1024 --precisions float32,bfloat16,float16 --runs 50 --device auto
        --score pgn_oh --p 0.1 --mode exact --gradient-of weights]

Per model, input size and precision, three variants timed side by side in one
run (interleaved A, B, C, A, B, C, ... so that clocks and heat affect all alike):

- forward:  the network and its labels (argmax; what any segmentation node pays);
- plain:    the head's plain PyTorch path: forward, labels and the gradient score
            (default: the node's default gradient score; --score, --p, --mode,
            --gradient-of choose another) at the last layer's resolution, upsampled
            to the output;
- fused:    the same with the fused Triton kernel (CUDA only).

Times are medians of ``--runs`` runs after ``--warmup``, with CUDA events on a
GPU and perf_counter on the CPU.  Overhead = (variant - forward) / forward.
The default model has its shipped weights, factories (``--models
package.module:function --model-path DIR``, e.g. ``byom_models:segformer_b0
--model-path examples/byom``) their own; the others random weights (the time
does not depend on the values).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from gradunc_ros.models import is_factory_reference, load_model
from gradunc_ros.pipeline import PRECISIONS
from gradunc_ros.uncertainty import DEFAULT_SCORE, HeadSettings, logits_of
from gradunc_ros.uncertainty.fused import triton_runs_on
from gradunc_ros.uncertainty.pgn import predicted_class


def timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    """Milliseconds one call takes: CUDA events on a GPU, perf_counter on the CPU."""
    if device.type == "cuda":

        def cuda_time(call: Callable[[], object]) -> float:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            end.synchronize()
            return start.elapsed_time(end)

        return cuda_time

    def cpu_time(call: Callable[[], object]) -> float:
        start = time.perf_counter()
        call()
        return 1e3 * (time.perf_counter() - start)

    return cpu_time


def variants(
    name: str, device: torch.device, dtype: torch.dtype, settings: HeadSettings, model_path: str | None
) -> dict[str, Callable[[torch.Tensor], object]]:
    loaded = load_model(name, None if name == "erfnet" or is_factory_reference(name) else "random",
                        model_path=model_path)  # fmt: skip
    model = loaded.model.to(device, dtype)
    key = loaded.card.output_key
    runs = {"forward": lambda x: predicted_class(logits_of(model(x), key)), "plain": loaded.make_head(settings)}
    if triton_runs_on(device):
        runs["fused"] = loaded.make_head(settings, fused="triton")
    return runs


@torch.no_grad()
def measure(
    name: str, size: tuple[int, int], dtype: torch.dtype, device: torch.device, runs: int, warmup: int,
    settings: HeadSettings, model_path: str | None = None,
):  # fmt: skip
    width, height = size
    calls = variants(name, device, dtype, settings, model_path)
    x = torch.randn(1, 3, height, width, device=device).to(dtype)
    clock = timer(device)
    times: dict[str, list[float]] = {key: [] for key in calls}
    for index in range(warmup + runs):
        for key, call in calls.items():
            elapsed = clock(lambda c=call: c(x))
            if index >= warmup:
                times[key].append(elapsed)
    return {key: statistics.median(values) for key, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        default="erfnet,deeplabv3plus_resnet50,deeplabv3plus_wrn38",
        help="registered names or factories package.module:function (their own weights)",
    )
    parser.add_argument("--model-path", help="folder to import factories from, e.g. examples/byom")
    parser.add_argument("--sizes", default="480x360,1024x512,2048x1024")
    parser.add_argument("--precisions", default="float32,bfloat16,float16")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--device", default="auto")
    default = DEFAULT_SCORE if DEFAULT_SCORE.is_gradient_score else HeadSettings("pgn_oh", 0.1)
    parser.add_argument("--score", default=default.score, choices=("pgn_oh", "pgn_uni"))
    parser.add_argument("--p", type=float, default=default.p)
    parser.add_argument("--mode", default=default.mode, choices=("exact", "reference"))
    parser.add_argument("--gradient-of", default=default.gradient_of, choices=("weights", "bias", "layer"))
    args = parser.parse_args()
    settings = HeadSettings(args.score, args.p, args.mode, gradient_of=args.gradient_of)
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; medians of {args.runs} runs after {args.warmup}; "
          f"score {settings.name}")  # fmt: skip
    print("| model | input | precision | forward ms | + plain head ms | overhead | + fused head ms | overhead |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for model in args.models.split(","):
        for size_text in args.sizes.split(","):
            size = tuple(int(v) for v in size_text.split("x"))
            for precision in args.precisions.split(","):
                if device.type == "cpu" and precision != "float32":
                    continue  # half precision on the CPU measures emulation, not the method
                t = measure(
                    model, size, PRECISIONS[precision], device, args.runs, args.warmup, settings, args.model_path
                )
                base = t["forward"]
                fused = f"{t['fused']:.3f} | {100 * (t['fused'] - base) / base:+.2f} %" if "fused" in t else "n/a | n/a"
                print(f"| {model} | {size_text} | {precision} | {base:.3f} | {t['plain']:.3f} "
                      f"| {100 * (t['plain'] - base) / base:+.2f} % | {fused} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
