"""A learned PTZ policy exported to ONNX, run with ONNX Runtime on the device.

The model file carries its metadata in a manifest beside it (``policy.onnx`` →
``policy.manifest.json``, DESIGN.md): format, the three observation inputs with their shapes and
dtypes, the logits output over :data:`~edge.policy.base.DISCRETE_ACTIONS`, the observation config
the policy was trained with, and the model's sha256. Nothing is guessed from file names; every
mismatch is an error that names the file and the field.

Manifest (``sitehawk.policy/1``)::

    {
      "schema": "sitehawk.policy/1",
      "format": "onnx",
      "file": "policy.onnx",
      "sha256": "<hex of policy.onnx>",
      "inputs": [
        {"name": "view", "shape": [-1, 96, 96, 3], "dtype": "uint8"},
        {"name": "ptz", "shape": [-1, 3], "dtype": "float32"},
        {"name": "maps", "shape": [-1, 3, 14, 68], "dtype": "float32"}
      ],
      "outputs": [{"name": "logits", "shape": [-1, 7], "dtype": "float32"}],
      "actions": ["stay", "pan_left", ...],
      "obs_schema": "sitehawk.obs/1",
      "obs": {"view_size": 96, "grid_h": 14, ...},
      "source": "runs/ppo/model.zip", "versions": {"torch": "2.13.0", ...}
    }

A leading dimension of ``-1`` is the batch (the device runs batch 1).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from edge.onnx_io import check_session_io, open_session
from edge.policy.base import DISCRETE_ACTIONS, PolicyContext, discrete_to_command
from edge.policy.observation import (
    OBS_SCHEMA,
    Observation,
    ObservationConfig,
    observation_space_shapes,
)
from edge.sim.ptz import PTZCommand
from firmware_config.manifest import (
    ModelManifestBase,
    ModelManifestError,
    TensorSpec,
    check_model_file,
    load_manifest_file,
    manifest_path,
    sha256_of,
    write_manifest_file,
)

POLICY_SCHEMA = "sitehawk.policy/1"
INPUT_NAMES = ("view", "ptz", "maps")
OUTPUT_NAME = "logits"
_VIEW_DTYPES = ("uint8", "float32")


class PolicyManifestError(ModelManifestError):
    """A policy model or manifest that cannot be used; the message names the file and field."""


class PolicyManifest(ModelManifestBase):
    """The manifest beside an exported policy (``<stem>.manifest.json``)."""

    schema_: Literal["sitehawk.policy/1"] = Field("sitehawk.policy/1", alias="schema")
    format: Literal["onnx"] = "onnx"
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    actions: list[str] = Field(description="what each logit means, in order")
    obs_schema: str = OBS_SCHEMA
    obs: dict[str, Any] = Field(description="the ObservationConfig the policy was trained with")


def build_manifest(
    model_path: str | Path,
    obs_config: ObservationConfig | None = None,
    *,
    view_dtype: str = "uint8",
    source: str | None = None,
    versions: dict[str, str] | None = None,
) -> PolicyManifest:
    """The manifest for an exported policy file (what an exporter writes beside it)."""
    cfg = obs_config or ObservationConfig()
    shapes = observation_space_shapes(cfg)
    dtypes = {"view": view_dtype, "ptz": "float32", "maps": "float32"}
    return PolicyManifest.model_validate(
        {
            "schema": POLICY_SCHEMA,
            "format": "onnx",
            "file": Path(model_path).name,
            "sha256": sha256_of(model_path),
            "inputs": [
                {"name": n, "shape": [-1, *shapes[n]], "dtype": dtypes[n]} for n in INPUT_NAMES
            ],
            "outputs": [{"name": OUTPUT_NAME, "shape": [-1, len(DISCRETE_ACTIONS)]}],
            "actions": list(DISCRETE_ACTIONS),
            "obs_schema": OBS_SCHEMA,
            "obs": dataclasses.asdict(cfg),
            "source": source,
            "versions": versions or {},
        }
    )


def write_manifest(model_path: str | Path, manifest: PolicyManifest) -> Path:
    """Write ``manifest`` beside ``model_path``; returns the manifest's path."""
    return write_manifest_file(model_path, manifest)


def load_manifest(model_path: str | Path) -> PolicyManifest:
    """Read and validate the manifest beside ``model_path`` (errors name the file and field)."""
    return load_manifest_file(model_path, PolicyManifest, PolicyManifestError)


def _obs_config(path: Path, raw: dict[str, Any]) -> ObservationConfig:
    known = {f.name for f in dataclasses.fields(ObservationConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise PolicyManifestError(f"{path}:obs: unknown fields {unknown}; known: {sorted(known)}")
    try:
        return ObservationConfig(**raw)
    except TypeError as exc:
        raise PolicyManifestError(f"{path}:obs: {exc}") from None


def check_manifest(
    model_path: Path, manifest: PolicyManifest, obs_config: ObservationConfig | None = None
) -> ObservationConfig:
    """Check the manifest against the model file and the observation the device computes.

    Returns the manifest's observation config. ``obs_config``, when given, must equal it.
    """
    mpath = manifest_path(model_path)
    check_model_file(model_path, manifest, PolicyManifestError)
    if manifest.obs_schema != OBS_SCHEMA:
        raise PolicyManifestError(
            f"{mpath}:obs_schema: {manifest.obs_schema!r}, this device computes {OBS_SCHEMA!r}"
        )
    cfg = _obs_config(mpath, manifest.obs)
    if obs_config is not None and cfg != obs_config:
        raise PolicyManifestError(
            f"{mpath}:obs: the policy was trained on {cfg}, the device is configured with "
            f"{obs_config}"
        )
    if list(manifest.actions) != list(DISCRETE_ACTIONS):
        raise PolicyManifestError(
            f"{mpath}:actions: {manifest.actions} != the device's {list(DISCRETE_ACTIONS)}"
        )
    expected = observation_space_shapes(cfg)
    names = [t.name for t in manifest.inputs]
    if sorted(names) != sorted(INPUT_NAMES):
        raise PolicyManifestError(f"{mpath}:inputs: names {names}, expected {list(INPUT_NAMES)}")
    for i, spec in enumerate(manifest.inputs):
        want = expected[spec.name]
        if len(spec.shape) != len(want) + 1 or spec.shape[0] not in (-1, 1):
            raise PolicyManifestError(
                f"{mpath}:inputs.{i}.shape: {spec.shape}, expected {[-1, *want]}"
            )
        if tuple(spec.shape[1:]) != want:
            raise PolicyManifestError(
                f"{mpath}:inputs.{i}.shape: {spec.shape} does not match the observation "
                f"{spec.name!r} of shape {list(want)}"
            )
        allowed = _VIEW_DTYPES if spec.name == "view" else ("float32",)
        if spec.dtype not in allowed:
            raise PolicyManifestError(f"{mpath}:inputs.{i}.dtype: {spec.dtype!r}, use {allowed}")
    if len(manifest.outputs) != 1 or manifest.outputs[0].name != OUTPUT_NAME:
        raise PolicyManifestError(
            f"{mpath}:outputs: expected one output named {OUTPUT_NAME!r}, got "
            f"{[o.name for o in manifest.outputs]}"
        )
    out_shape = manifest.outputs[0].shape
    if out_shape[1:] != [len(DISCRETE_ACTIONS)] or out_shape[0] not in (-1, 1):
        raise PolicyManifestError(
            f"{mpath}:outputs.0.shape: {out_shape}, expected [-1, {len(DISCRETE_ACTIONS)}]"
        )
    return cfg


class OnnxPolicy:
    """A learned policy: argmax of the exported network's logits → a discrete PTZ action."""

    name = "learned"

    def __init__(
        self,
        path: str | Path,
        *,
        obs_config: ObservationConfig | None = None,
        providers: list[str] | None = None,
    ):
        self.path = Path(path)
        if not self.path.is_file():
            raise PolicyManifestError(f"{self.path}: no such model file")
        self.manifest = load_manifest(self.path)
        self.obs_config = check_manifest(self.path, self.manifest, obs_config)
        self.session = open_session(self.path, PolicyManifestError, providers)
        check_session_io(
            self.session, self.path, self.manifest.inputs, [OUTPUT_NAME], PolicyManifestError
        )
        self._dtypes = {t.name: np.dtype(t.dtype) for t in self.manifest.inputs}

    def reset(self, ctx: PolicyContext, seed: int | None = None) -> None:
        """Remember the camera (actions are relative to its field of view)."""
        self.ctx = ctx

    def logits(self, obs: Observation) -> np.ndarray:
        """The network's logits (7,) for one observation."""
        arrays = obs.as_dict()
        feed = {
            name: np.asarray(arrays[name])[None].astype(dt) for name, dt in self._dtypes.items()
        }
        out = self.session.run([OUTPUT_NAME], feed)[0]
        return np.asarray(out, dtype=np.float32).reshape(-1)

    def act(self, obs: Observation) -> PTZCommand:
        """The most likely action, as a PTZ command."""
        action = int(np.argmax(self.logits(obs)))
        return discrete_to_command(action, obs.pose, self.ctx.camera, self.ctx.dt)
