"""The ONNX Runtime deployment path of ``compress``: export, int8 quantisation, a callable wrapper.

``onnxruntime`` (and ``onnx`` for the export and quantisation tools) are optional: callers
check :func:`available` first. Nothing here imports them at module import.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["OnnxModel", "available", "export_onnx", "quantizable_nodes", "quantize_onnx"]


def available() -> str | None:
    """``None`` when the ONNX Runtime path can run, else what is missing."""
    missing = []
    for name in ("onnxruntime", "onnx"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        return f"{' and '.join(missing)} not installed (pip install onnxruntime onnx)"
    return None


class OnnxModel:
    """An ONNX Runtime session that behaves like the model it came from.

    ``model(x)`` takes a float tensor batch and returns a float tensor, as the original
    ``nn.Module`` in eval mode would. ``save(path)`` writes the ``.onnx`` file, which any
    ONNX Runtime (Python, C++, C#, Java, JS) loads with ``InferenceSession(path)``.

    Attributes:
        onnx_bytes: the serialised model.
        threads: intra-op threads of the session.
    """

    def __init__(self, onnx_bytes: bytes, threads: int = 1) -> None:
        import onnxruntime as ort  # type: ignore[import-untyped,import-not-found,unused-ignore]

        self.onnx_bytes = onnx_bytes
        self.threads = threads
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name
        self._outputs = [o.name for o in self.session.get_outputs()][:1]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Run a batch; ``x`` becomes a float32 NumPy array (no copy where possible)."""
        a = x.detach().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        if a.dtype != np.float32:
            a = a.astype(np.float32)
        out = self.session.run(self._outputs, {self._input: a})[0]
        return torch.from_numpy(np.asarray(out))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the ``.onnx`` file to ``path``."""
        from tunelens._atomic import write_files

        write_files([(Path(path), self.onnx_bytes)])

    def __repr__(self) -> str:
        return f"OnnxModel({len(self.onnx_bytes)} bytes, threads={self.threads})"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def export_onnx(model: nn.Module, example: torch.Tensor) -> bytes:
    """Export ``model`` (eval mode) with a dynamic batch axis; the TorchScript exporter first.

    Raises:
        RuntimeError: neither exporter managed (the message says why).
    """
    model = model.eval()
    errors = []
    for dynamo in (False, True):
        buf = io.BytesIO()
        try:
            with _quiet(), torch.no_grad():
                kwargs: dict[str, Any] = {
                    "input_names": ["x"],
                    "output_names": ["y"],
                    "dynamo": dynamo,
                }
                if dynamo:
                    kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch")},)
                else:
                    kwargs["dynamic_axes"] = {"x": {0: "batch"}, "y": {0: "batch"}}
                torch.onnx.export(model, (example,), buf, **kwargs)  # type: ignore[arg-type]
            return buf.getvalue()
        except Exception as exc:  # exporter failures are many and version-specific
            errors.append(f"{'dynamo' if dynamo else 'torchscript'}: {type(exc).__name__}: {exc}")
    raise RuntimeError("ONNX export failed: " + " | ".join(e[:200] for e in errors))


def quantizable_nodes(onnx_bytes: bytes) -> list[str]:
    """Names of the MatMul/Gemm/Conv nodes, the ones int8 quantisation rewrites."""
    import onnx

    graph = onnx.load_from_string(onnx_bytes).graph
    return [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm", "Conv")]


class _Reader:
    def __init__(self, batches: Sequence[np.ndarray]) -> None:
        self._it = iter([{"x": b} for b in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:  # pragma: no cover - called by some onnxruntime versions
        pass


def quantize_onnx(
    onnx_bytes: bytes,
    *,
    static: bool,
    calibration: Sequence[np.ndarray] = (),
    exclude: Sequence[str] = (),
    only: Sequence[str] | None = None,
) -> bytes:
    """int8 post-training quantisation with ``onnxruntime.quantization``.

    Dynamic: int8 weights, activations quantised per batch at run time (MatMul/Gemm only:
    ONNX Runtime's dynamic ``ConvInteger`` is slower than float on CPU). Static: QDQ format,
    per-channel int8 weights, uint8 activations calibrated (MinMax) on ``calibration``.

    Args:
        onnx_bytes: the float model.
        static: static (calibrated) rather than dynamic quantisation.
        calibration: input batches for static calibration.
        exclude: node names kept in float.
        only: quantise only these nodes (for one-layer-at-a-time sensitivity).

    Returns:
        The quantised model's bytes.
    """
    from onnxruntime.quantization import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    # the dynamic quantiser first rewrites a Gemm into MatMul + Add named "<gemm>_MatMul":
    # name both so that a node list selects the layer either way
    exclude = [*exclude, *(f"{n}_MatMul" for n in exclude)]
    if only is not None:
        only = [*only, *(f"{n}_MatMul" for n in only)]
    with tempfile.TemporaryDirectory(prefix="tunelens-q-") as tmp:
        src, dst = Path(tmp, "f.onnx"), Path(tmp, "q.onnx")
        src.write_bytes(onnx_bytes)
        with _quiet():
            if static:
                quantize_static(
                    str(src),
                    str(dst),
                    _Reader(list(calibration)),
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    reduce_range=True,  # as for dynamic quantisation, below
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    nodes_to_exclude=list(exclude),
                    nodes_to_quantize=list(only) if only is not None else None,
                    calibrate_method=CalibrationMethod.MinMax,
                )
            else:
                # 7-bit weights: x86 CPUs without VNNI saturate u8 x s8 products in the
                # int8 kernels (ONNX Runtime 1.32 here: 16% output error on a small MLP
                # with 8-bit weights, 0.8% with reduce_range)
                quantize_dynamic(
                    str(src),
                    str(dst),
                    weight_type=QuantType.QInt8,
                    reduce_range=True,
                    op_types_to_quantize=["MatMul", "Gemm"],
                    nodes_to_exclude=list(exclude),
                    nodes_to_quantize=list(only) if only is not None else None,
                )
        return dst.read_bytes()
