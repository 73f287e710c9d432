"""Inference backends: run one input tensor through a model file, get its raw output.

``BACKENDS`` is the registry the device config chooses from:

* ``onnxruntime`` — ONNX Runtime with the best execution provider present (TensorRT, CUDA on a
  Jetson; CPU here), or the providers given;
* ``tensorrt`` — a serialized TensorRT engine built on the device (``trtexec --onnx=detector.onnx
  --saveEngine=detector.engine --fp16``), run with the TensorRT Python API and CUDA memory from
  ``cuda-python``. Both ship with JetPack; where they are missing the backend says so.

Every engine takes a float32 NCHW array and returns its first output as float32.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge.onnx_io import open_session
from edge.perception.manifest import DetectorModelError


class Engine(Protocol):
    """One loaded model."""

    input_name: str
    output_name: str

    def run(self, tensor: np.ndarray) -> np.ndarray:
        """The model's output for ``tensor``."""
        ...

    def close(self) -> None:
        """Release the model (idempotent)."""
        ...


#: Execution providers tried in this order when none are given (those installed are used).
PREFERRED_PROVIDERS = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)


class OnnxRuntimeEngine:
    """An ONNX model in an ONNX Runtime session."""

    def __init__(
        self,
        path: Path,
        *,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        session: Any = None,
    ):
        if session is None:
            import onnxruntime as ort

            available = set(ort.get_available_providers())
            chosen = list(providers or [p for p in PREFERRED_PROVIDERS if p in available])
            session = open_session(path, DetectorModelError, chosen, threads)
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.output_name = session.get_outputs()[0].name

    def run(self, tensor: np.ndarray) -> np.ndarray:
        out = self.session.run([self.output_name], {self.input_name: tensor})[0]
        return np.asarray(out, dtype=np.float32)

    def close(self) -> None:
        self.session = None


class TensorRTEngine:  # pragma: no cover - needs an NVIDIA GPU with TensorRT (a Jetson)
    """A serialized TensorRT engine (TensorRT ≥ 10 tensor API, one input, one output)."""

    def __init__(self, path: Path, **_: Any):
        try:
            import tensorrt as trt
            from cuda.bindings import runtime as cudart
        except ImportError as exc:
            raise DetectorModelError(
                f"{path}: the tensorrt backend needs NVIDIA TensorRT and cuda-python (both ship "
                f"with JetPack on a Jetson) — not installed here ({exc.name}); use the "
                "onnxruntime backend with the .onnx model instead"
            ) from None
        self._cudart = cudart
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise DetectorModelError(
                f"{path}: TensorRT cannot deserialize it (built by another TensorRT version or "
                "for another GPU? rebuild it on this device with trtexec)"
            )
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        ins = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(ins) != 1 or not outs:
            raise DetectorModelError(f"{path}: expected one input and an output, got {names}")
        self.input_name, self.output_name = ins[0], outs[0]
        self._engine, self._context = engine, engine.create_execution_context()
        self._in_shape = tuple(engine.get_tensor_shape(self.input_name))
        self._out_shape = tuple(engine.get_tensor_shape(self.output_name))
        self._buffers: dict[str, int] = {}
        for name, shape in ((self.input_name, self._in_shape), (self.output_name, self._out_shape)):
            nbytes = int(np.prod(shape)) * 4
            err, ptr = cudart.cudaMalloc(nbytes)
            if int(err) != 0:
                raise DetectorModelError(f"{path}: cudaMalloc of {nbytes} bytes failed ({err})")
            self._buffers[name] = ptr
            self._context.set_tensor_address(name, ptr)
        _, self._stream = cudart.cudaStreamCreate()

    def run(self, tensor: np.ndarray) -> np.ndarray:
        cudart = self._cudart
        host_in = np.ascontiguousarray(tensor, dtype=np.float32).reshape(self._in_shape)
        host_out = np.empty(self._out_shape, dtype=np.float32)
        h2d, d2h = (
            cudart.cudaMemcpyKind.cudaMemcpyHostToDevice,
            (cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost),
        )
        cudart.cudaMemcpyAsync(
            self._buffers[self.input_name], host_in.ctypes.data, host_in.nbytes, h2d, self._stream
        )
        self._context.execute_async_v3(self._stream)
        cudart.cudaMemcpyAsync(
            host_out.ctypes.data,
            self._buffers[self.output_name],
            host_out.nbytes,
            d2h,
            self._stream,
        )
        cudart.cudaStreamSynchronize(self._stream)
        return host_out

    def close(self) -> None:
        for ptr in self._buffers.values():
            self._cudart.cudaFree(ptr)
        self._buffers.clear()


#: Backend name → engine factory ``(path, providers=…, threads=…) -> Engine``.
BACKENDS: dict[str, Callable[..., Engine]] = {
    "onnxruntime": OnnxRuntimeEngine,
    "tensorrt": TensorRTEngine,
}


def make_engine(backend: str, path: Path, **kwargs: Any) -> Engine:
    """Load ``path`` with the named backend; an unknown name lists the known ones."""
    try:
        factory = BACKENDS[backend]
    except KeyError:
        raise DetectorModelError(
            f"unknown inference backend {backend!r}; choose one of {sorted(BACKENDS)}"
        ) from None
    return factory(path, **kwargs)
