"""ONNX runtimes robots use, behind one call: ``open_session(path, backend, threads, precision).run(x)``.

- ``onnxruntime``: ONNX Runtime's CPU execution provider, float32.
- ``openvino``: OpenVINO on the CPU; float32 unless asked (it would pick bfloat16 by itself on CPUs that have
  it, so float32 is asked for explicitly); ``bfloat16`` where the CPU has it, opt-in.

A runtime that is not installed is one line naming what to install.  The
runtimes are optional dependencies (the extra ``onnx``: ``pip install ".[onnx]"`` in the repository, or
``pip install onnx onnxruntime openvino``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

BACKENDS: tuple[str, ...] = ("torch", "onnxruntime", "openvino")
ONNX_BACKENDS: tuple[str, ...] = BACKENDS[1:]
PRECISIONS = {"onnxruntime": ("float32",), "openvino": ("float32", "bfloat16")}
INSTALL = {"onnxruntime": "pip install onnxruntime", "openvino": "pip install openvino"}


class RuntimeMissingError(RuntimeError):
    """The runtime a backend needs is not installed; says what to install."""


def check_backend(backend: str, precision: str = "float32") -> None:
    """ValueError for an unknown backend or a precision it does not offer."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if backend in PRECISIONS and precision not in PRECISIONS[backend]:
        raise ValueError(f"backend {backend} runs {' or '.join(PRECISIONS[backend])}, not {precision}")


class Session:
    """One loaded graph: ``run`` takes the network input and returns the outputs by name."""

    backend: str
    output_names: tuple[str, ...]

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError


class OnnxRuntimeSession(Session):
    backend = "onnxruntime"

    def __init__(self, path: Path, threads: int) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise RuntimeMissingError(f"backend onnxruntime needs ONNX Runtime: {INSTALL['onnxruntime']}") from None
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3  # its warnings about unused initializers would repeat per session
        # Idle pool threads spin by default, taking the cores the node's decoding, publishing and DDS threads
        # (or a second session) need: ERFNet's head graph took 102.5 ms beside a spinning session, 70.9 ms
        # without spinning (benchmarks/backends.py, 320x240, 2 cores).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self.output_names = tuple(o.name for o in self._session.get_outputs())

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        values = self._session.run(list(self.output_names), {self._input: np.ascontiguousarray(x, np.float32)})
        return dict(zip(self.output_names, values, strict=True))


class OpenVinoSession(Session):
    backend = "openvino"

    def __init__(self, path: Path, threads: int, precision: str, names: tuple[str, ...]) -> None:
        try:
            import openvino
        except ImportError:
            raise RuntimeMissingError(f"backend openvino needs OpenVINO: {INSTALL['openvino']}") from None
        core = openvino.Core()
        config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bfloat16" else "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        if precision == "bfloat16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise ValueError("precision bfloat16: this CPU has no bfloat16 (OpenVINO's OPTIMIZATION_CAPABILITIES)")
        self._compiled = core.compile_model(str(path), "CPU", config)
        # An output has several names in OpenVINO (the ONNX one among its own): keep the graph's.
        self.output_names = tuple(
            next((name for name in names if name in output.get_names()), output.get_any_name())
            for output in self._compiled.outputs
        )
        self._request = self._compiled.create_infer_request()

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        results = self._request.infer({0: np.ascontiguousarray(x, np.float32)})
        return {name: np.asarray(results[output]) for name, output in zip(
            self.output_names, self._compiled.outputs, strict=True
        )}  # fmt: skip


def open_session(
    path: str | Path, backend: str, threads: int = 0, precision: str = "float32", names: tuple[str, ...] = ()
) -> Session:
    """The graph at ``path`` loaded in ``backend`` (onnxruntime or openvino) with ``threads`` (0: the runtime's
    default) and ``precision``; ``names``: the graph's output names.  ValueError or RuntimeMissingError with
    the reason."""
    check_backend(backend, precision)
    if backend == "onnxruntime":
        return OnnxRuntimeSession(Path(path), threads)
    if backend == "openvino":
        return OpenVinoSession(Path(path), threads, precision, names)
    raise ValueError(f"backend {backend} does not run ONNX files (use onnxruntime or openvino)")
