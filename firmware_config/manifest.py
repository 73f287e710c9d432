"""What every model file a device runs carries beside it: a manifest (DESIGN.md, "Packages").

A model file ``models/x.onnx`` has ``models/x.manifest.json`` beside it: its schema, format, the
file's name and sha256, its input and output tensors, and what it was built from. The model
kinds (policy ``sitehawk.policy/1``, detector ``sitehawk.detector/1``, …) define their own
manifest models on top of :class:`ModelManifestBase`; this module holds what they share:
reading a manifest with errors that name the file and the field, and checking the model file
against it. Standard library + pydantic only: it runs on a bare device.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "ModelManifestBase",
    "ModelManifestError",
    "TensorSpec",
    "check_model_file",
    "load_manifest_file",
    "manifest_path",
    "sha256_of",
    "write_manifest_file",
]


class ModelManifestError(ValueError):
    """A model or manifest that cannot be used; the message names the file and the field."""


class TensorSpec(BaseModel):
    """One model input or output: name, shape (-1 = a free dimension, e.g. batch) and dtype."""

    model_config = ConfigDict(extra="forbid")

    name: str
    shape: list[int] = Field(description="dimensions; -1 is a free dimension (the batch)")
    dtype: Literal["uint8", "float32"] = "float32"


class ModelManifestBase(BaseModel):
    """Fields every manifest has: which file it describes and that file's sha256."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    file: str = Field(description="the model file's name, beside the manifest")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the model file")
    data_files: dict[str, str] = Field(
        default_factory=dict,
        description="further files the model loads (ONNX external data), name → sha256",
    )
    source: str | None = Field(None, description="checkpoint the export came from")
    versions: dict[str, str] = Field(default_factory=dict, description="library versions")


M = TypeVar("M", bound=ModelManifestBase)


def manifest_path(model_path: str | Path) -> Path:
    """``models/policy.onnx`` → ``models/policy.manifest.json``."""
    p = Path(model_path)
    return p.with_name(f"{p.stem}.manifest.json")


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_manifest_file(
    model_path: str | Path, cls: type[M], error: type[ModelManifestError] = ModelManifestError
) -> M:
    """Read and validate the manifest beside ``model_path`` (errors name the file and field)."""
    path = manifest_path(model_path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise error(
            f"{path}: manifest not found (every model needs <stem>.manifest.json beside it)"
        ) from None
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not valid JSON: {exc}") from None
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        lines = [
            f"{path}:{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise error("\n".join(lines)) from None


def write_manifest_file(model_path: str | Path, manifest: ModelManifestBase) -> Path:
    """Write ``manifest`` beside ``model_path``; returns the manifest's path."""
    path = manifest_path(model_path)
    path.write_text(json.dumps(manifest.model_dump(by_alias=True), indent=2) + "\n")
    return path


def check_model_file(
    model_path: Path,
    manifest: ModelManifestBase,
    error: type[ModelManifestError] = ModelManifestError,
) -> None:
    """The manifest must name ``model_path`` and match its sha256 (and its data files')."""
    mpath = manifest_path(model_path)
    if manifest.file != model_path.name:
        raise error(f"{mpath}:file: names {manifest.file!r}, but the model is {model_path.name!r}")
    files = {model_path.name: manifest.sha256, **manifest.data_files}
    for name, expected in files.items():
        path = model_path.with_name(name)
        field = "sha256" if name == model_path.name else f"data_files.{name}"
        if not path.is_file():
            raise error(f"{mpath}:{field}: {path} is missing (the model needs it)")
        actual = sha256_of(path)
        if actual != expected:
            raise error(
                f"{mpath}:{field}: {expected[:12]}… does not match {path} ({actual[:12]}…): "
                "the file was changed or replaced"
            )
