"""Opening ONNX models with ONNX Runtime and checking them against their manifests.

Shared by every ONNX model the device runs (the learned policy, the detector): the session's
own inputs and outputs must be the ones the manifest promises, and every mismatch is an error
that names the model file, the manifest and the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from firmware_config.manifest import ModelManifestError, TensorSpec, manifest_path

#: ONNX Runtime's type strings → manifest dtypes.
ORT_TYPES = {"tensor(uint8)": "uint8", "tensor(float)": "float32"}


def open_session(
    path: Path,
    error: type[ModelManifestError],
    providers: Sequence[str] | None = None,
    threads: int | None = None,
) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``path``; load failures name the file."""
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - part of the edge install
        raise error(f"{path}: running an ONNX model needs onnxruntime") from exc
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(
            str(path), sess_options=options, providers=list(providers or ["CPUExecutionProvider"])
        )
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
        raise error(f"{path}: ONNX Runtime cannot load it: {exc}") from None


def check_session_io(
    session: Any,
    path: Path,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[str],
    error: type[ModelManifestError],
) -> None:
    """The graph's inputs must match ``inputs`` (names, dtypes, fixed dims) and have ``outputs``."""
    mpath = manifest_path(path)
    graph_in = {i.name: i for i in session.get_inputs()}
    for i, spec in enumerate(inputs):
        node = graph_in.get(spec.name)
        if node is None:
            raise error(
                f"{mpath}:inputs.{i}.name: {spec.name!r} is not an input of {path} "
                f"(it has {sorted(graph_in)})"
            )
        dtype = ORT_TYPES.get(node.type, node.type)
        if dtype != spec.dtype:
            raise error(f"{mpath}:inputs.{i}.dtype: {spec.dtype!r}, but {path} takes {dtype!r}")
        dims = list(node.shape)
        if len(dims) != len(spec.shape) or any(
            isinstance(d, int) and s != -1 and d != s
            for d, s in zip(dims[1:], spec.shape[1:], strict=True)
        ):
            raise error(f"{mpath}:inputs.{i}.shape: {spec.shape}, but {path} takes {dims}")
    extra = sorted(set(graph_in) - {t.name for t in inputs})
    if extra:
        raise error(f"{path}: inputs {extra} are not in the manifest")
    graph_out = [o.name for o in session.get_outputs()]
    for i, name in enumerate(outputs):
        if name not in graph_out:
            raise error(
                f"{mpath}:outputs.{i}.name: {name!r} is not an output of {path} "
                f"(it has {graph_out})"
            )
