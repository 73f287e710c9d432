"""Device-side PTZ policies: baselines act sensibly, the ONNX policy loads only what it should.

Runs in the torch-free edge install too: nothing here imports trainer, torch or gymnasium (the
ONNX tests build their tiny model with ``onnx`` and skip where it is not installed).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.geometry import (
    REFERENCE_HEIGHT_PX,
    REFERENCE_WIDTH_PX,
    CameraView,
    PTZPose,
    pan_tilt_of_point,
)
from edge.policy.base import POLICIES, Policy, PolicyContext, make_policy
from edge.policy.baselines import (
    HEAD_SIZE_M,
    PERSON_TOP_M,
    GreedyPolicy,
    PatrolPolicy,
    RandomPolicy,
    work_area_points,
)
from edge.policy.observation import (
    Observation,
    ObservationBuilder,
    ObservationConfig,
    Target,
    observation_space_shapes,
)
from edge.sim.generate import generate_site
from edge.sim.perception import SimulatedPerception
from edge.sim.ptz import AbsoluteMove, ContinuousMove, PTZCommand, RelativeMove, Stop
from edge.sim.spec import SiteSpec
from edge.sim.virtual import VirtualSite

BASELINES = sorted(n for n in POLICIES if n != "learned")
SITE_SEED = 5
DT = 0.2
FRAME = (160, 90)  # what the episodes capture: the device's 16:9, scaled down


@pytest.fixture(scope="module")
def site_spec() -> SiteSpec:
    return generate_site(SITE_SEED, duration_s=30.0)


def _ctx(spec: SiteSpec) -> PolicyContext:
    return PolicyContext(camera=spec.camera, work_areas=spec.work_areas, control_hz=1 / DT)


def _blank_obs(pose: PTZPose, t: float, targets: list[Target] | None = None) -> Observation:
    shapes = observation_space_shapes(ObservationConfig())
    return Observation(
        np.zeros(shapes["view"], np.uint8),
        np.zeros(3, np.float32),
        np.zeros(shapes["maps"], np.float32),
        pose,
        t,
        targets or [],
    )


def _device_loop(
    policy: Policy, spec: SiteSpec, steps: int
) -> tuple[list[PTZCommand], list[PTZPose]]:
    """The device's loop on a virtual camera: capture → perception → observation → act."""
    site = VirtualSite(spec)
    perception = SimulatedPerception(SITE_SEED)
    builder = ObservationBuilder(spec.camera)
    policy.reset(_ctx(spec), seed=0)
    commands, poses = [], []
    for _ in range(steps):
        frame, truth = site.capture(*FRAME)
        assert truth is not None
        obs = builder.update(
            frame.image, perception.detect(truth, frame.index), frame.pose, frame.t
        )
        cmd = policy.act(obs)
        commands.append(cmd)
        poses.append(site.pose)
        site.command(cmd)
        site.advance(DT)
    return commands, poses


# ------------------------------------------------------------------ every baseline
@pytest.mark.parametrize("name", BASELINES)
def test_baseline_returns_valid_commands_for_50_steps(name: str, site_spec: SiteSpec) -> None:
    policy = make_policy(name)
    assert policy.name == name
    commands, poses = _device_loop(policy, site_spec, 50)
    lim = site_spec.camera.limits
    for cmd in commands:
        assert isinstance(cmd, (AbsoluteMove, RelativeMove, ContinuousMove, Stop))
        if isinstance(cmd, AbsoluteMove):
            assert lim.pan_min_deg <= cmd.pan_deg <= lim.pan_max_deg
            assert lim.tilt_min_deg <= cmd.tilt_deg <= lim.tilt_max_deg
            assert 1.0 <= cmd.zoom <= lim.zoom_max
            assert all(math.isfinite(v) for v in (cmd.pan_deg, cmd.tilt_deg, cmd.zoom))
    if name != "static_wide":  # everything but the fixed view moves the head
        assert (
            len({(round(p.pan_deg, 2), round(p.tilt_deg, 2), round(p.zoom, 2)) for p in poses}) > 3
        )


def test_static_wide_moves_once_then_stops(site_spec: SiteSpec) -> None:
    commands, poses = _device_loop(make_policy("static_wide"), site_spec, 30)
    assert isinstance(commands[0], AbsoluteMove) and commands[0].zoom == 1.0
    assert all(isinstance(c, Stop) for c in commands[-10:])
    assert poses[-1] == poses[-5]


# ------------------------------------------------------------------ patrol
def _shows_verifiable(
    spec: SiteSpec, pose: PTZPose, xy: np.ndarray, min_head_px: float
) -> np.ndarray:
    """Independent check: feet and head top inside a 16:9 frame, head ≥ min_head_px tall."""
    cam = spec.camera
    view = CameraView(
        (cam.position[0], cam.position[1], cam.height_m),
        cam.heading_deg,
        pose,
        REFERENCE_WIDTH_PX,
        REFERENCE_HEIGHT_PX,
    )
    ok = np.ones(len(xy), dtype=bool)
    for h in (0.0, PERSON_TOP_M):
        uv, z = view.project(np.c_[xy, np.full(len(xy), h)])
        ok &= (z > 0) & (uv >= 0).all(axis=1)
        ok &= (uv[:, 0] <= REFERENCE_WIDTH_PX) & (uv[:, 1] <= REFERENCE_HEIGHT_PX)
    head = np.c_[xy, np.full(len(xy), 1.75)]
    _, depth = view.project(head)
    ok &= view.focal * HEAD_SIZE_M / np.maximum(depth, 1e-6) >= min_head_px
    return ok


def test_patrol_presets_cover_every_work_area_point_at_verifying_zoom(site_spec: SiteSpec) -> None:
    policy = PatrolPolicy()
    ctx = _ctx(site_spec)
    policy.reset(ctx)
    assert policy.plan is not None and not policy.plan.uncovered.any()
    points = work_area_points(site_spec.work_areas, policy.spacing_m)
    assert len(points) > 100
    covered = np.zeros(len(points), dtype=bool)
    for pose in policy.presets:
        covered |= _shows_verifiable(site_spec, pose, points, ctx.verify_head_px)
    assert covered.all(), f"{(~covered).sum()} of {len(points)} work-area points never verifiable"
    # between the sample points too (a finer, shifted grid; people move, the margins absorb it)
    fine = work_area_points(site_spec.work_areas, 1.7) + 0.4
    fine_cov = np.zeros(len(fine), dtype=bool)
    for pose in policy.presets:
        fine_cov |= _shows_verifiable(site_spec, pose, fine, ctx.verify_head_px)
    assert fine_cov.mean() > 0.97
    # a zoom-1 wide view alone would not do: the far presets zoom in
    assert max(p.zoom for p in policy.presets) > 3.0


def test_patrol_visits_presets_in_tour_order(site_spec: SiteSpec) -> None:
    policy = PatrolPolicy()
    commands, _ = _device_loop(policy, site_spec, 60)
    moves = [c for c in commands if isinstance(c, AbsoluteMove)]
    targets = [PTZPose(m.pan_deg, m.tilt_deg, m.zoom) for m in moves]
    assert len(targets) >= 5
    presets = policy.presets
    idx = [presets.index(t) for t in targets]
    assert all((b - a) % len(presets) == 1 for a, b in zip(idx, idx[1:], strict=False))


# ------------------------------------------------------------------ greedy
def test_greedy_moves_onto_a_candidate_it_is_shown(site_spec: SiteSpec) -> None:
    policy = GreedyPolicy()
    ctx = _ctx(site_spec)
    policy.reset(ctx)
    wide = policy.wides[0]
    first = policy.act(_blank_obs(PTZPose(0.0, -20.0, 1.0), 0.0))
    assert isinstance(first, AbsoluteMove) and first.zoom == pytest.approx(wide.zoom)
    # a far person, seen at the wide preset too small to judge
    w, d = site_spec.size_m
    cam = site_spec.camera
    far = max(
        ((w * 0.8, d * 0.8), (w * 0.2, d * 0.8), (w * 0.8, d * 0.2), (w * 0.2, d * 0.2)),
        key=lambda p: math.dist(p, cam.position),
    )
    mount = (cam.position[0], cam.position[1], cam.height_m)
    pan, tilt, rng = pan_tilt_of_point(mount, cam.heading_deg, np.array([far[0], far[1], 0.0]))
    target = Target("person", float(pan), float(tilt), float(rng), far, 0.9, 4.0, False, None)
    cmd = None
    for k in range(1, 6):
        cmd = policy.act(_blank_obs(wide, k * DT, [target]))
        if isinstance(cmd, AbsoluteMove):
            break
    assert isinstance(cmd, AbsoluteMove), "greedy never went for the candidate"
    assert cmd.pan_deg == pytest.approx(float(pan), abs=1.5)
    assert abs(cmd.tilt_deg - float(tilt)) < 3.0
    f_ref = (REFERENCE_WIDTH_PX / 2) / math.tan(
        math.radians(cam.limits.fov_h_1x_deg / cmd.zoom / 2)
    )
    assert f_ref * HEAD_SIZE_M / float(rng) >= ctx.verify_head_px  # zoomed enough to verify


def test_greedy_goes_back_to_wide_once_the_candidate_is_verified(site_spec: SiteSpec) -> None:
    policy = GreedyPolicy(wide_dwell_steps=1, max_wide_views=1)
    policy.reset(_ctx(site_spec))
    wide = policy.wides[0]
    policy.act(_blank_obs(wide, 0.0))
    policy.act(_blank_obs(wide, DT))  # arrived at wide
    w, d = site_spec.size_m
    xy = (w / 2, d / 2)
    cam = site_spec.camera
    pan, tilt, rng = pan_tilt_of_point(
        (cam.position[0], cam.position[1], cam.height_m), cam.heading_deg, np.array([*xy, 0.0])
    )
    cand = Target("person", float(pan), float(tilt), float(rng), xy, 0.9, 5.0, False, None)
    go = policy.act(_blank_obs(wide, 2 * DT, [cand]))
    assert isinstance(go, AbsoluteMove) and go.zoom > 1.0
    there = PTZPose(go.pan_deg, go.tilt_deg, go.zoom)
    seen = dataclasses.replace(cand, verified=True, size_ref_px=20.0)
    back = policy.act(_blank_obs(there, 3 * DT, [seen]))
    assert isinstance(back, AbsoluteMove)
    assert back.zoom == pytest.approx(policy.wide_zoom)


# ------------------------------------------------------------------ random
def test_random_is_deterministic_for_a_seed(site_spec: SiteSpec) -> None:
    ctx = _ctx(site_spec)
    runs = []
    for seed in (7, 7, 8):
        policy = RandomPolicy()
        policy.reset(ctx, seed=seed)
        runs.append([policy.act(_blank_obs(PTZPose(0.0, -20.0, 2.0), k * DT)) for k in range(40)])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert len({type(c).__name__ + str(c) for c in runs[0]}) > 3


# ------------------------------------------------------------------ learned (ONNX)
def _tiny_policy(tmp_path: Path, cfg: ObservationConfig | None = None) -> tuple[Path, np.ndarray]:
    """A linear ONNX policy over [ptz, mean(view)/255, mean(maps)] with a manifest beside it."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from edge.policy.learned import build_manifest, write_manifest

    cfg = cfg or ObservationConfig()
    shapes = observation_space_shapes(cfg)
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(5, 7)).astype(np.float32)
    nodes = [
        helper.make_node("Cast", ["view"], ["view_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["view_f"], ["view_m"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Div", ["view_m", "c255"], ["view_n"]),
        helper.make_node("Unsqueeze", ["view_n", "ax1"], ["view_c"]),
        helper.make_node("ReduceMean", ["maps"], ["maps_m"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Unsqueeze", ["maps_m", "ax1"], ["maps_c"]),
        helper.make_node("Concat", ["ptz", "view_c", "maps_c"], ["feat"], axis=1),
        helper.make_node("MatMul", ["feat", "w"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_policy",
        [
            helper.make_tensor_value_info("view", TensorProto.UINT8, ["batch", *shapes["view"]]),
            helper.make_tensor_value_info("ptz", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("maps", TensorProto.FLOAT, ["batch", *shapes["maps"]]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 7])],
        initializer=[
            numpy_helper.from_array(weight, "w"),
            numpy_helper.from_array(np.array(255.0, np.float32), "c255"),
            numpy_helper.from_array(np.array([1], np.int64), "ax1"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path / "policy.onnx"
    onnx.save(model, str(path))
    write_manifest(path, build_manifest(path, cfg, source="test"))
    return path, weight


def _real_obs(spec: SiteSpec) -> Observation:
    site = VirtualSite(spec)
    frame, truth = site.capture(*FRAME)
    assert truth is not None
    builder = ObservationBuilder(spec.camera)
    return builder.update(frame.image, SimulatedPerception(0).detect(truth, 0), frame.pose, 0.0)


def test_onnx_policy_round_trip(tmp_path: Path, site_spec: SiteSpec) -> None:
    from edge.policy.base import discrete_to_command
    from edge.policy.learned import OnnxPolicy

    path, weight = _tiny_policy(tmp_path)
    policy = make_policy("learned", path=path)
    assert isinstance(policy, OnnxPolicy)
    ctx = _ctx(site_spec)
    policy.reset(ctx)
    obs = _real_obs(site_spec)
    feat = np.concatenate([obs.ptz, [obs.view.astype(np.float32).mean() / 255], [obs.maps.mean()]])
    expected = feat.astype(np.float32) @ weight
    np.testing.assert_allclose(policy.logits(obs), expected, rtol=1e-4, atol=1e-5)
    cmd = policy.act(obs)
    assert cmd == discrete_to_command(int(np.argmax(expected)), obs.pose, ctx.camera, ctx.dt)


def _edit_manifest(path: Path, **changes: Any) -> None:
    mpath = path.with_name(f"{path.stem}.manifest.json")
    data = json.loads(mpath.read_text())
    data.update(changes)
    mpath.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"sha256": "0" * 64}, "sha256"),
        ({"file": "other.onnx"}, "file"),
        ({"actions": ["stay", "pan_left"]}, "actions"),
        ({"obs": {**dataclasses.asdict(ObservationConfig()), "grid_w": 40}}, "inputs.2.shape"),
        ({"obs": {"view_size": 96, "colour": True}}, "obs"),
        (
            {
                "inputs": [
                    {"name": "view", "shape": [-1, 64, 64, 3], "dtype": "uint8"},
                    {"name": "ptz", "shape": [-1, 3], "dtype": "float32"},
                    {"name": "maps", "shape": [-1, 3, 14, 68], "dtype": "float32"},
                ]
            },
            "inputs.0.shape",
        ),
        ({"outputs": [{"name": "probs", "shape": [-1, 7], "dtype": "float32"}]}, "outputs"),
        ({"format": "tensorrt"}, "format"),
        ({"extra_field": 1}, "extra_field"),
    ],
)
def test_onnx_policy_rejects_a_bad_manifest(
    tmp_path: Path, change: dict[str, Any], field: str
) -> None:
    from edge.policy.learned import OnnxPolicy, PolicyManifestError

    path, _ = _tiny_policy(tmp_path)
    _edit_manifest(path, **change)
    with pytest.raises(PolicyManifestError) as err:
        OnnxPolicy(path)
    assert "policy.manifest.json" in str(err.value)
    assert field in str(err.value)


def test_onnx_policy_rejects_a_changed_model_and_a_missing_manifest(tmp_path: Path) -> None:
    from edge.policy.learned import OnnxPolicy, PolicyManifestError

    path, _ = _tiny_policy(tmp_path)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(PolicyManifestError, match="sha256"):
        OnnxPolicy(path)
    path.with_name("policy.manifest.json").unlink()
    with pytest.raises(PolicyManifestError, match="manifest not found"):
        OnnxPolicy(path)
    with pytest.raises(PolicyManifestError, match="no such model file"):
        OnnxPolicy(tmp_path / "missing.onnx")


def test_onnx_policy_rejects_a_device_with_another_observation(tmp_path: Path) -> None:
    from edge.policy.learned import OnnxPolicy, PolicyManifestError

    path, _ = _tiny_policy(tmp_path)
    with pytest.raises(PolicyManifestError, match="obs"):
        OnnxPolicy(path, obs_config=ObservationConfig(stale_s=30.0))
