"""Backends side by side: bare forward and forward + uncertainty head, per runtime and precision (prints a table).

    .venv/bin/python benchmarks/backends.py [--sizes 320x240,480x360 --runs 10 --warmup 3 --threads 2
        --model M --model-path DIR --score pgn_oh --p 0.1 --mode exact --gradient-of weights]

Per network input size, every variant is timed in one run, interleaved
(A, B, C, ..., A, B, C, ...) so that clocks and heat affect all alike:

- torch forward / torch + head: PyTorch eager, the model alone (its logits and labels) and the head;
- <runtime> forward: the model alone exported to ONNX (logits only, opset 17), in that runtime;
- <runtime> + head: the graph ``gradunc-export --onnx`` writes (labels, score and logits in one graph).

Runtimes: onnxruntime (float32), openvino (float32; bfloat16 where the CPU has it). Each ONNX variant's labels
and score are compared with PyTorch's on the same input (label agreement, max |log score difference|).
Medians of --runs after --warmup, perf_counter, CPU.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from gradunc_ros.deploy.onnx_export import export_onnx, installed_runtimes
from gradunc_ros.deploy.runtimes import PRECISIONS, open_session
from gradunc_ros.models import load_model
from gradunc_ros.models.preprocess import fit_to_multiple
from gradunc_ros.uncertainty import DEFAULT_SCORE, HeadSettings, logits_of
from gradunc_ros.uncertainty.pgn import predicted_class


def bare_onnx(loaded, size: tuple[int, int], path: Path) -> Path:
    """The model alone (logits), as any ONNX export of it would be."""

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = loaded.model

        def forward(self, x):
            return logits_of(self.model(x), loaded.card.output_key)

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Logits().eval(), (torch.zeros(1, 3, *size),), str(path), opset_version=17, dynamo=False,
                          input_names=["image"], output_names=["logits"])  # fmt: skip
    return path


def variants(loaded, settings: HeadSettings, size: tuple[int, int], folder: Path, threads: int) -> dict:
    frame = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    graph = export_onnx(loaded, settings, folder / "head.onnx", [size], [frame]).path
    bare = bare_onnx(loaded, size, folder / "bare.onnx")
    head = loaded.make_head(settings)
    model, key = loaded.model, loaded.card.output_key
    runs = {
        "torch forward": lambda x: predicted_class(logits_of(model(x), key)),
        "torch + head": lambda x: head(x),
    }
    for runtime in installed_runtimes():
        for precision in PRECISIONS[runtime]:
            try:
                sessions = (
                    open_session(bare, runtime, threads, precision),
                    open_session(graph, runtime, threads, precision, ("labels", "score", "logits")),
                )
            except ValueError as error:  # e.g. bfloat16 on a CPU without it
                print(f"{runtime} {precision}: not measured ({error})")
                continue
            name = f"{runtime} {precision}"
            runs[f"{name} forward"] = lambda x, s=sessions[0]: s.run(x.numpy())
            runs[f"{name} + head"] = lambda x, s=sessions[1]: s.run(x.numpy())
    return runs


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="registered name or factory (default: the shipped ERFNet)")
    parser.add_argument("--model-path")
    parser.add_argument("--sizes", default="320x240,480x360")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--score", default=DEFAULT_SCORE.score)
    parser.add_argument("--p", type=float, default=DEFAULT_SCORE.p)
    parser.add_argument("--mode", default=DEFAULT_SCORE.mode)
    parser.add_argument("--gradient-of", default=DEFAULT_SCORE.gradient_of)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = HeadSettings(args.score, args.p, args.mode, gradient_of=args.gradient_of)
    loaded = load_model(args.model, model_path=args.model_path)
    print(f"{loaded.name}; score {settings.name}; CPU, {args.threads} threads; torch {torch.__version__}; "
          f"medians of {args.runs} interleaved runs after {args.warmup}")  # fmt: skip
    print("| input | variant | ms | vs torch forward | labels vs torch | max abs log score diff |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for text in args.sizes.split(","):
        width, height = (int(v) for v in text.split("x"))
        size = fit_to_multiple((height, width), loaded.input_multiple)
        with tempfile.TemporaryDirectory() as folder:
            runs = variants(loaded, settings, size, Path(folder), args.threads)
            x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1))
            times = {name: [] for name in runs}
            for index in range(args.warmup + args.runs):
                for name, call in runs.items():
                    start = time.perf_counter()
                    call(x)
                    if index >= args.warmup:
                        times[name].append(1e3 * (time.perf_counter() - start))
            reference = loaded.make_head(settings)(x)
            base = statistics.median(times["torch forward"])
            for name, values in times.items():
                agreement = difference = ""
                if name.endswith("+ head") and not name.startswith("torch"):
                    out = runs[name](x)
                    agreement = f"{100 * (out['labels'] == reference.labels.numpy()).mean():.3f} %"
                    difference = f"{np.abs(out['score'] - reference.score.numpy()).max():.2e}"
                median = statistics.median(values)
                print(f"| {size[1]}x{size[0]} | {name} | {median:.1f} | {base / median:.2f}x | {agreement} "
                      f"| {difference} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
