"""Hazard rules and the alert manager: dwell, cool-down, stable ids, seq, restarts, zones, VLM hook.

The pipeline tests drive tracker → rules → manager with detections synthesised from the geometry
(a fixed world point projected into each camera pose); the last tests run the virtual site with
simulated perception. The agent side never sees ground truth; only the tests use it to aim.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import cv2
import numpy as np
import pytest
from jsonschema import Draft202012Validator

from edge.alerts.manager import AlertManager, Emitted, NotYet
from edge.alerts.rules import (
    DEFAULT_HAZARD_RULES,
    HazardObservation,
    HazardRules,
    HazardRuleSpec,
    ZoneSpec,
    distance_to_boundary,
    distance_to_polygon,
    point_in_polygon,
)
from edge.alerts.schema import VlmCheck, load_alert_schema, validate_alert
from edge.alerts.snapshot import render_snapshot
from edge.alerts.state import MemoryStateStore, StateStore
from edge.alerts.tracker import Track, WorldTracker
from edge.geometry import CameraView, PTZPose, pan_tilt_of_point, zoom_for_size
from edge.perception.detection import Detection
from firmware_config.camera import CameraMountSpec

MOUNT = CameraMountSpec(position=[0.0, 0.0], height_m=10.0, heading_deg=0.0)
POLE = (0.0, 0.0, 10.0)
W, H = 1280, 720
WALL0 = datetime(2025, 6, 1, 8, 0, 0, tzinfo=timezone.utc)
FRAME = np.random.default_rng(0).integers(60, 200, (H, W, 3), dtype=np.uint8)
MODELS = {"detector": hashlib.sha256(b"detector").hexdigest()}
FAST = {
    "no_helmet": HazardRuleSpec(dwell_s=1.0, cooldown_s=5.0, severity="medium"),
    "no_vest": HazardRuleSpec(dwell_s=1.0, cooldown_s=5.0, severity="low"),
    "zone_intrusion": HazardRuleSpec(min_confidence=0.5, dwell_s=1.0, cooldown_s=5.0),
    "fire_smoke": HazardRuleSpec(dwell_s=1.0, cooldown_s=5.0, severity="critical"),
}
STRICT = Draft202012Validator(load_alert_schema())


# ------------------------------------------------------------------ synthetic detections
def _aim(xy: tuple[float, float], zoom: float, d_pan: float = 0.0, z_m: float = 0.9) -> PTZPose:
    pan, tilt, _ = pan_tilt_of_point(POLE, 0.0, np.array([xy[0], xy[1], z_m]))
    return PTZPose(float(pan) + d_pan, float(tilt), zoom)


def person_detections(
    pose: PTZPose, xy: tuple[float, float], *, helmet: bool = True, vest: bool = True
) -> list[Detection]:
    """Person, head and vest boxes of a 1.75 m worker at ``xy`` as seen from ``pose``."""
    view = CameraView(POLE, 0.0, pose, W, H)
    uv, depth = view.project(np.array([[xy[0], xy[1], 0.0], [xy[0], xy[1], 1.75]]))
    (u, foot), (_, top) = uv
    hp = foot - top
    if (depth <= 0).any() or not (0 < u < W and top < H and foot > 0):
        return []

    def clip(b: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        return (max(b[0], 0.0), max(b[1], 0.0), min(b[2], W), min(b[3], H))

    dets = [Detection("person", 0.9, clip((u - 0.17 * hp, top, u + 0.17 * hp, foot)))]
    head = (u - 0.08 * hp, top - 0.01 * hp, u + 0.08 * hp, top + 0.15 * hp)
    dets.append(Detection("head_helmet" if helmet else "head_bare", 0.9, clip(head)))
    if vest:
        torso = (u - 0.15 * hp, top + 0.17 * hp, u + 0.15 * hp, top + 0.51 * hp)
        dets.append(Detection("vest", 0.9, clip(torso)))
    return dets


def machine_detection(pose: PTZPose, xy: tuple[float, float], arm_m: float) -> Detection:
    x, y = xy
    pts = np.array(
        [[x - 2, y, 0], [x + 2 + arm_m, y, 0], [x - 2, y, 3.0], [x + 2, y, 3.0 + 0.5 * arm_m]]
    )
    uv, _ = CameraView(POLE, 0.0, pose, W, H).project(pts)
    return Detection(
        "machine", 0.9, (uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max())
    )


@dataclass
class Agent:
    """tracker → rules → manager for one camera, as the agent loop wires them."""

    store: StateStore
    rules: dict[str, HazardRuleSpec] = field(default_factory=lambda: dict(FAST))
    zones: tuple[ZoneSpec, ...] = ()
    vlm_gate: Any = None
    emitted: list[Emitted] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tracker = WorldTracker(MOUNT)
        self.hazard_rules = HazardRules(self.rules, self.zones)
        self.manager = AlertManager(
            self.store,
            site_id="site-a",
            device_id="dev-1",
            camera_id=MOUNT.id,
            snapshot_topic=lambda alert_id: f"sitehawk/v1/site-a/dev-1/snapshot/{alert_id}",
            agent_version="0.1.0-test",
            rules=self.rules,
            models=MODELS,
            vlm_gate=self.vlm_gate,
        )

    def step(self, dets: list[Detection], pose: PTZPose, t: float) -> list[Emitted]:
        tracks = self.tracker.update(dets, pose, W, H, t)
        wall = WALL0 + timedelta(seconds=t)
        observations = self.hazard_rules.update(tracks, wall)
        out = self.manager.update(observations, wall, FRAME, pose, t_site=t)
        self.emitted += out
        return out


def _check(emitted: list[Emitted]) -> None:
    """Every message validates (ours and a plain validator), seq strictly increases."""
    for e in emitted:
        validate_alert(e.alert)
        STRICT.validate(e.alert)
    seqs = [e.alert["seq"] for e in emitted]
    assert seqs == sorted(set(seqs)), seqs


def _stored(store: StateStore, key: str) -> dict[str, Any]:
    value = store.get(key)
    assert isinstance(value, dict), value
    return value


def _raised(emitted: list[Emitted], hazard: str | None = None) -> list[Emitted]:
    return [
        e
        for e in emitted
        if e.state == "raised" and (hazard is None or e.alert["hazard"] == hazard)
    ]


def _cleared(emitted: list[Emitted]) -> list[Emitted]:
    return [e for e in emitted if e.state == "cleared"]


WORKER = (6.0, 40.0)


# ------------------------------------------------------------------ manager timing (hand-made)
def _obs(key: str = "p1", pan: float = 5.0, conf: float = 0.9) -> HazardObservation:
    return HazardObservation(
        "no_helmet", key, pan, -10.0, (0.4, 0.3, 0.5, 0.9), (3.0, 30.0), conf, size_deg=3.0
    )


def _manager(store: StateStore | None = None, **kwargs: Any) -> AlertManager:
    return AlertManager(
        store or MemoryStateStore(),
        site_id="site-a",
        device_id="dev-1",
        camera_id="cam0",
        snapshot_topic=lambda a: f"sitehawk/v1/site-a/dev-1/snapshot/{a}",
        agent_version="0.1.0-test",
        rules=kwargs.pop("rules", FAST),
        models=MODELS,
        **kwargs,
    )


AT_OBJECT, AWAY = PTZPose(5.0, -10.0, 4.0), PTZPose(40.0, -10.0, 4.0)  # 15° wide at zoom 4


def _run_posed(
    manager: AlertManager, schedule: list[tuple[float, list[HazardObservation], PTZPose]]
) -> list[tuple[float, Emitted]]:
    """Feed each (t, observations, camera pose) frame; the emitted messages with their t."""
    out: list[tuple[float, Emitted]] = []
    for t, observations, pose in schedule:
        for e in manager.update(observations, WALL0 + timedelta(seconds=t), FRAME, pose, t):
            out.append((t, e))
    return out


def _run(manager: AlertManager, schedule: list[tuple[float, list[HazardObservation]]]):
    """Feed each (t, observations) frame, the camera still at the objects' place."""
    return _run_posed(manager, [(t, observations, AT_OBJECT) for t, observations in schedule])


def test_raised_after_dwell_cleared_after_cooldown() -> None:
    store = MemoryStateStore()
    manager = _manager(store)
    seen = [(round(0.1 * k, 1), [_obs()]) for k in range(40)]  # 0.0 … 3.9 s
    unseen: list[tuple[float, list[HazardObservation]]] = [
        (round(4.0 + 0.1 * k, 1), []) for k in range(80)
    ]  # 4.0 … 11.9 s
    out = _run(manager, seen + unseen)
    assert [(t, e.state) for t, e in out] == [(1.0, "raised"), (8.9, "cleared")]
    (_, raised), (_, cleared) = out
    _check([raised, cleared])
    assert raised.alert_id == cleared.alert_id
    assert [raised.alert["seq"], cleared.alert["seq"]] == [1, 2]
    assert raised.alert["first_seen"] == cleared.alert["first_seen"] == "2025-06-01T08:00:00.000Z"
    assert raised.alert["ts"] == "2025-06-01T08:00:01.000Z"
    assert cleared.alert["ts"] == "2025-06-01T08:00:08.900Z"
    assert raised.alert["severity"] == "medium" and raised.alert["vlm"] is None
    assert raised.alert["models"] == MODELS
    # the evidence: a JPEG on the snapshot topic; the cleared message points at the same one
    jpeg = raised.snapshot_jpeg
    assert jpeg is not None and cleared.snapshot_jpeg is None
    evidence = raised.alert["evidence"]
    assert cleared.alert["evidence"] == evidence
    assert evidence["snapshot_sha256"] == hashlib.sha256(jpeg).hexdigest()
    assert evidence["snapshot_topic"].endswith(f"/snapshot/{raised.alert_id}")
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    assert image.shape == (evidence["height"], evidence["width"], 3) == (720, 1280, 3)
    # the box is drawn in red on the full frame
    x0, y0 = round(0.4 * 1280), round(0.3 * 720)
    edge_px = image[y0 + 20 : y0 + 60, x0 - 1 : x0 + 2].reshape(-1, 3).mean(0)
    assert edge_px[2] > 180 and edge_px[0] < 100 and edge_px[1] < 100
    # no open events are left in the store
    assert _stored(store, manager.state_key)["events"] == []


def test_short_gaps_keep_the_dwell_long_gaps_restart_it() -> None:
    # observed at 0.0-0.5, gap of 1.0 s (< max_gap_s 1.5), observed again: raised at 1.0
    schedule = [(round(0.1 * k, 1), [_obs()] if not 5 < k < 15 else []) for k in range(20)]
    assert [t for t, e in _run(_manager(), schedule) if e.state == "raised"] == [1.5]
    # a 2 s gap restarts the dwell at 2.6
    schedule = [(round(0.1 * k, 1), [_obs()] if not 5 < k < 26 else []) for k in range(50)]
    assert [t for t, e in _run(_manager(), schedule) if e.state == "raised"] == [3.6]


def test_seq_strictly_increases_over_many_events() -> None:
    manager = _manager()
    schedule = []
    for k in range(300):  # three workers coming and going
        obs = [_obs(f"p{j}", pan=5.0 + 20 * j) for j in range(3) if (k // (30 + 17 * j)) % 2 == 0]
        schedule.append((round(0.1 * k, 1), obs))
    out = [e for _, e in _run(manager, schedule)]
    assert len(out) >= 6
    _check(out)
    ids = {e.alert_id for e in _raised(out)}
    assert len(ids) == len(_raised(out))
    for e in _cleared(out):
        assert e.alert_id in ids


def test_lower_severity_and_disabled_rules() -> None:
    rules = dict(FAST, no_helmet=HazardRuleSpec(enabled=False))
    manager = AlertManager(
        MemoryStateStore(),
        site_id="s",
        device_id="d",
        camera_id="c",
        snapshot_topic=lambda a: f"t/{a}",
        agent_version="v",
        rules=rules,
    )
    assert _run(manager, [(0.1 * k, [_obs()]) for k in range(30)]) == []


def test_bad_configuration_is_named() -> None:
    with pytest.raises(ValueError, match="models.detector"):
        _manager_bad = AlertManager(  # noqa: F841
            MemoryStateStore(),
            site_id="s",
            device_id="d",
            camera_id="c",
            snapshot_topic=lambda a: a,
            agent_version="v",
            models={"detector": "nope"},
        )
    with pytest.raises(ValueError, match="hazards.no_gloves"):
        HazardRules({"no_gloves": HazardRuleSpec()})
    with pytest.raises(ValueError, match="severity"):
        HazardRuleSpec(severity="urgent")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"zones\.z1\.schedule\[0\]\[1\]"):
        ZoneSpec("z1", ((0, 0), (1, 0), (1, 1)), active="schedule", schedule=(("08:00", "25:00"),))
    with pytest.raises(ValueError, match="timezone"):
        _manager().update([], datetime(2025, 1, 1), FRAME, PTZPose(0, 0, 1))


# ------------------------------------------------------------------ full pipeline, synthetic
TOUR = [
    _aim(WORKER, 4.0),
    _aim(WORKER, 8.0, d_pan=1.0),
    _aim(WORKER, 2.0, d_pan=-6.0),
    _aim(WORKER, 1.0, d_pan=20.0),
    _aim(WORKER, 12.0, d_pan=-0.5),
    _aim(WORKER, 5.0, d_pan=3.0),
]


def test_one_alert_id_per_event_across_pans_and_zooms() -> None:
    agent = Agent(MemoryStateStore())
    t = 0.0
    for _ in range(3):
        for pose in TOUR:
            for _ in range(10):
                agent.step(person_detections(pose, WORKER, helmet=False), pose, t)
                t += 0.1
        away = _aim(WORKER, 4.0, d_pan=70.0)  # a look elsewhere, shorter than the cool-down
        for _ in range(20):
            agent.step([], away, t)
            t += 0.1
    _check(agent.emitted)
    assert len(_raised(agent.emitted)) == 1 and _cleared(agent.emitted) == []
    (alert,) = _raised(agent.emitted)
    assert alert.alert["hazard"] == "no_helmet"
    pan, tilt, _ = pan_tilt_of_point(POLE, 0.0, np.array([*WORKER, 0.9]))
    assert alert.alert["location"]["pan_deg"] == pytest.approx(float(pan), abs=0.5)
    assert alert.alert["location"]["tilt_deg"] == pytest.approx(float(tilt), abs=0.5)
    assert alert.alert["location"]["ground_xy_m"] == pytest.approx(list(WORKER), abs=0.5)
    # the worker walks off: one cleared message, same id
    for _ in range(80):
        agent.step([], TOUR[0], t)
        t += 0.1
    assert [e.alert_id for e in _cleared(agent.emitted)] == [alert.alert_id]


def test_helmet_worker_raises_nothing_and_vestless_worker_raises_no_vest() -> None:
    agent = Agent(MemoryStateStore())
    other = (WORKER[0] + 3.0, WORKER[1])
    pose = _aim(WORKER, 4.0, d_pan=1.0)
    for k in range(40):
        dets = person_detections(pose, WORKER) + person_detections(pose, other, vest=False)
        agent.step(dets, pose, 0.1 * k)
    _check(agent.emitted)
    assert [e.alert["hazard"] for e in _raised(agent.emitted)] == ["no_vest"]
    assert _raised(agent.emitted)[0].alert["severity"] == "low"


def test_restart_with_the_same_store_does_not_reraise_and_still_clears() -> None:
    store = MemoryStateStore()
    pose = _aim(WORKER, 4.0)
    first = Agent(store)
    t = 0.0
    while t < 4.0:
        first.step(person_detections(pose, WORKER, helmet=False), pose, t)
        t += 0.1
    (raised,) = _raised(first.emitted)
    assert _stored(store, first.manager.state_key)["events"][0]["alert_id"] == raised.alert_id
    # the process dies; a new one starts on the same store, with new tracks (new track ids)
    second = Agent(store)
    t += 3.0
    closer = _aim(WORKER, 6.0)
    for _ in range(50):
        second.step(person_detections(closer, WORKER, helmet=False), closer, t)
        t += 0.1
    assert _raised(second.emitted) == []
    assert [e["alert_id"] for e in second.manager.open_events()] == [raised.alert_id]
    # the worker leaves: the restarted agent clears the event it took over
    for _ in range(100):
        second.step([], pose, t)
        t += 0.1
    (cleared,) = second.emitted
    assert cleared.state == "cleared" and cleared.alert_id == raised.alert_id
    assert cleared.alert["first_seen"] == raised.alert["first_seen"]
    _check(first.emitted + second.emitted)


def test_restart_after_the_hazard_is_gone_clears_on_schedule() -> None:
    store = MemoryStateStore()
    pose = _aim(WORKER, 4.0)
    first = Agent(store)
    t = 0.0
    while t < 3.0:
        first.step(person_detections(pose, WORKER, helmet=False), pose, t)
        t += 0.1
    (raised,) = _raised(first.emitted)
    last_seen = t - 0.1
    persisted = _stored(store, first.manager.state_key)["events"][0]["last_seen"]
    persisted_s = (datetime.fromisoformat(persisted.replace("Z", "+00:00")) - WALL0).total_seconds()
    assert last_seen - first.manager.persist_interval_s <= persisted_s <= last_seen
    second = Agent(store)  # restarted 1 s later, the worker has gone
    t += 1.0
    while not second.emitted:
        second.step([], pose, t)
        t += 0.1
        assert t < 20.0
    (cleared,) = second.emitted
    assert cleared.alert_id == raised.alert_id and cleared.alert["seq"] > raised.alert["seq"]
    # cleared one cool-down (5 s) after the last sighting the store knew of
    assert t - 0.1 - persisted_s == pytest.approx(5.0, abs=0.15)


def _stored_event(**changes: Any) -> dict[str, Any]:
    event = {
        "hazard": "no_helmet",
        "key": "person-old-1",
        "zone_id": None,
        "alert_id": "3f2b8c1e-9a4d-4e2f-8b1a-2c3d4e5f6a7b",
        "first_seen": "2025-06-01T07:59:00.000Z",
        "last_seen": "2025-06-01T07:59:58.000Z",
        "location": {
            "pan_deg": 5.0,
            "tilt_deg": -10.0,
            "zoom": 4.0,
            "bbox": [0.4, 0.3, 0.5, 0.9],
            "ground_xy_m": None,
        },
        "size_deg": 3.0,
        "confidence": 0.9,
        "severity": "medium",
        "evidence": {
            "snapshot_topic": "t/x",
            "snapshot_sha256": "0" * 64,
            "width": 1280,
            "height": 720,
        },
        "vlm": None,
    }
    event.update(changes)
    return event


@pytest.mark.parametrize(
    ("state", "restored"),
    [
        ({"schema": "sitehawk.alert-state/1", "events": [_stored_event()]}, 1),
        ({"schema": "sitehawk.alert-state/1", "events": [{"x": 1}]}, 0),
        ({"schema": "sitehawk.alert-state/1", "events": [_stored_event(severity="urgent")]}, 0),
        ({"schema": "sitehawk.alert-state/9", "events": []}, 0),
        (["not", "a", "mapping"], 0),
    ],
)
def test_unreadable_state_is_ignored_with_an_error_log(
    state: Any, restored: int, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryStateStore()
    store.set("alerts/open/cam0", state)
    manager = _manager(store)
    # 2 s after the stored sighting: a readable event is kept open (cool-down 5 s) ...
    assert _run(manager, [(0.0, [])]) == []
    assert len(manager.open_events()) == restored
    assert ("ignoring unreadable alert state" in caplog.text) == (restored == 0)
    if restored:  # ... and cleared 3 s later, with its stored id and evidence
        out = _run(manager, [(round(0.1 * k, 1), []) for k in range(1, 40)])
        assert [(t, e.state, e.alert_id) for t, e in out] == [
            (3.0, "cleared", _stored_event()["alert_id"])
        ]
        assert out[0][1].alert["evidence"] == _stored_event()["evidence"]


def test_restart_on_the_outbox_database_does_not_reraise(tmp_path: Any) -> None:
    """The same with the real store: the outbox's SQLite StateStore, one transaction a frame."""
    outbox_module = pytest.importorskip("edge.mqtt.outbox")
    path = tmp_path / "outbox.db"
    pose = _aim(WORKER, 4.0)
    t = 0.0
    runs = []
    for _ in range(2):  # two processes, one after the other, on the same database file
        outbox = outbox_module.Outbox(path)
        agent = Agent(outbox.state)
        for _ in range(30):
            with outbox.transaction():
                for e in agent.step(person_detections(pose, WORKER, helmet=False), pose, t):
                    outbox.put(e.snapshot_topic, e.snapshot_jpeg or b"", kind="snapshot")
                    outbox.put("alert", json.dumps(e.alert).encode(), kind="alert")
            t += 0.1
        runs.append(agent.emitted)
        outbox.close()
        t += 1.0
    assert [len(_raised(r)) for r in runs] == [1, 0]
    _check(runs[0] + runs[1])


# ------------------------------------------------------------------ zones
MACHINE = (-10.0, 50.0)
ZONE = ZoneSpec(
    "excavator-zone",
    ((-22.0, 38.0), (0.0, 38.0), (0.0, 62.0), (-22.0, 62.0)),
    active="while_machine_moving",
    severity="critical",
)


@pytest.mark.parametrize("working", [True, False])
def test_zone_intrusion_while_the_machine_in_the_zone_moves(working: bool) -> None:
    agent = Agent(MemoryStateStore(), zones=(ZONE,))
    pose = _aim((-2.0, 50.0), 2.0, z_m=1.5)
    t = 0.0
    inside_since = None
    rng = np.random.default_rng(5)
    while t < 22.0:
        x = 10.0 - 1.2 * max(0.0, t - 4.0)  # walks in from x=10 after 4 s, stops at x=-4
        x = max(x, -4.0)
        if x < 0 and inside_since is None:
            inside_since = t
        arm = 2.0 + (1.5 * math.sin(2 * math.pi * t / 7.0) if working else 0.0)
        machine = machine_detection(pose, MACHINE, arm)
        jitter = rng.normal(0, 0.02, 4) * np.array([machine.width, machine.height] * 2)
        x0, y0, x1, y1 = (float(v) for v in np.asarray(machine.bbox) + jitter)
        machine = Detection("machine", 0.9, (x0, y0, x1, y1))
        agent.step([machine, *person_detections(pose, (x, 50.0))], pose, t)
        t += 0.1
    _check(agent.emitted)
    raised = _raised(agent.emitted, "zone_intrusion")
    if not working:
        assert raised == []
        return
    (alert,) = raised
    assert alert.alert["severity"] == "critical"  # the zone's own severity
    assert inside_since is not None
    raised_at = (
        datetime.fromisoformat(alert.alert["ts"].replace("Z", "+00:00")) - WALL0
    ).total_seconds()
    assert inside_since + 1.0 <= raised_at <= inside_since + 2.5
    ground = alert.alert["location"]["ground_xy_m"]
    assert ground is not None and ground[0] < 0.0


def test_distance_to_a_zones_boundary_inside_and_out() -> None:
    square = ((0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0))
    assert distance_to_boundary((2.0, 5.0), square) == pytest.approx(2.0)  # inside
    assert distance_to_polygon((2.0, 5.0), square) == 0.0
    assert distance_to_boundary((13.0, 14.0), square) == pytest.approx(5.0)  # outside
    assert distance_to_polygon((13.0, 14.0), square) == pytest.approx(5.0)


def test_zone_activity_rules() -> None:
    always = ZoneSpec("a", ((0, 0), (10, 0), (10, 10), (0, 10)))
    night = ZoneSpec("n", always.polygon, active="schedule", schedule=(("22:00", "06:00"),))
    day = ZoneSpec("d", always.polygon, active="schedule", schedule=(("08:00", "12:00"),))
    rules = HazardRules(FAST, [always, night, day])
    at = datetime(2025, 6, 1, 23, 30, tzinfo=timezone.utc)
    assert [z.id for z in rules.active_zones([], at)] == ["a", "n"]
    assert [z.id for z in rules.active_zones([], at.replace(hour=9))] == ["a", "d"]
    assert [z.id for z in rules.active_zones([], at.replace(hour=5, minute=59))] == ["a", "n"]
    assert [z.id for z in rules.active_zones([], at.replace(hour=6))] == ["a"]
    # schedules are in the site's time zone: 21:30 UTC is 23:30 at UTC+2
    site_tz = timezone(timedelta(hours=2))
    local = HazardRules(FAST, [night, day], timezone=site_tz)
    assert [z.id for z in local.active_zones([], at.replace(hour=21))] == ["n"]
    assert [z.id for z in local.active_zones([], at.replace(hour=7))] == ["d"]
    assert point_in_polygon((5, 5), always.polygon)
    assert not point_in_polygon((11, 5), always.polygon)
    assert distance_to_polygon((13, 5), always.polygon) == pytest.approx(3.0)
    # a moving machine within the margin activates a while_machine_moving zone
    moving = ZoneSpec("m", always.polygon, active="while_machine_moving", machine_margin_m=3.0)
    machine = Track("machine-x-1", "machine", 0, 0, 5, 5, 0.9, 0, 0, hits=5, confirmed=True)
    machine.ground_xy, machine.moving = (12.0, 5.0), True
    assert [z.id for z in HazardRules(FAST, [moving]).active_zones([machine], at)] == ["m"]
    machine.moving = False
    assert HazardRules(FAST, [moving]).active_zones([machine], at) == []


def test_device_config_maps_one_to_one_onto_the_rule_inputs() -> None:
    """DeviceConfig's hazard defaults are DEFAULT_HAZARD_RULES; the documented adapter works."""
    device = pytest.importorskip("firmware_config.device")
    hazards = device.HazardRules()
    for name, default in DEFAULT_HAZARD_RULES.items():
        rule = hazards.rule(name)
        spec = HazardRuleSpec(**rule.model_dump(exclude={"vlm_check"}), require_vlm=rule.vlm_check)
        assert dataclasses.replace(spec, require_vlm=default.require_vlm) == default, name
    zone = device.ZoneConfig.model_validate(
        {
            "id": "z1",
            "polygon": [[0, 0], [10, 0], [10, 10]],
            "active": {"schedule": [["22:00", "06:00"]]},
        }
    )
    spec_zone = ZoneSpec(
        zone.id, tuple(map(tuple, zone.polygon)), zone.activity, tuple(zone.schedule), zone.severity
    )
    assert spec_zone.scheduled(datetime(2025, 1, 1, 23, 0)) and spec_zone.active == "schedule"


# ------------------------------------------------------------------ the VLM hook
def _vlm(confirmed: bool | None, error: Any = None) -> VlmCheck:
    return {
        "question": "Is the worker wearing a helmet?",
        "answer": None if error else ("no" if confirmed else "yes"),
        "confirmed": confirmed,
        "latency_ms": None if error else 350.0,
        "error": error,
    }


@pytest.mark.parametrize(
    ("answer", "raises"),
    [(_vlm(True), True), (_vlm(False), False), (_vlm(None, "timeout"), True), (None, True)],
)
def test_vlm_gate_suppresses_only_a_confident_contradiction(
    answer: VlmCheck | None, raises: bool
) -> None:
    calls = []

    def gate(
        obs: HazardObservation, frame: np.ndarray, pose: PTZPose, blur_px: float
    ) -> VlmCheck | None:
        calls.append(obs.key)
        return answer

    rules = dict(FAST, no_helmet=HazardRuleSpec(dwell_s=1.0, cooldown_s=5.0, require_vlm=True))
    manager = AlertManager(
        MemoryStateStore(),
        site_id="s",
        device_id="d",
        camera_id="c",
        snapshot_topic=lambda a: f"t/{a}",
        agent_version="v",
        rules=rules,
        vlm_gate=gate,
    )
    out = [e for _, e in _run(manager, [(0.1 * k, [_obs()]) for k in range(40)])]
    assert len(calls) == 1  # asked once, not every frame
    assert [e.state for e in out] == (["raised"] if raises else [])
    if raises:
        assert out[0].alert["vlm"] == answer
        _check(out)


def _waiting_manager(answers: list[Any], calls: list[float]) -> AlertManager:
    """A manager whose gate answers from ``answers`` in turn (the last one repeats) and records
    the blur estimate it was given."""

    def gate(obs: HazardObservation, frame: np.ndarray, pose: PTZPose, blur_px: float) -> Any:
        calls.append(blur_px)
        return answers[min(len(calls), len(answers)) - 1]

    rules = dict(FAST, no_helmet=HazardRuleSpec(dwell_s=1.0, cooldown_s=5.0, require_vlm=True))
    return _manager(rules=rules, vlm_gate=gate, vlm_max_wait_s=2.0)


def test_a_gate_that_cannot_judge_the_view_yet_is_asked_again_on_later_frames() -> None:
    calls: list[float] = []
    manager = _waiting_manager([NotYet("blurred"), NotYet("blurred"), _vlm(False)], calls)
    out = _run(manager, [(0.1 * k, [_obs()]) for k in range(40)])
    assert len(calls) == 3  # from the dwell on, each frame until it could ask
    assert out == []  # the third frame's confident contradiction suppressed it
    assert manager.vlm_counts == {"waited": 1}


def test_a_waiting_event_is_the_cameras_look_target_until_the_gate_could_ask() -> None:
    calls: list[float] = []
    manager = _waiting_manager([NotYet("cut"), NotYet("cut"), NotYet("cut"), _vlm(True)], calls)
    targets = []
    for k in range(20):
        t = round(0.1 * k, 1)
        manager.update(
            [_obs(pan=5.0 + 0.1 * k)],
            WALL0 + timedelta(seconds=t),
            FRAME,
            PTZPose(5.0, -10.0, 4.0),
            t,
        )
        targets.append(manager.look_target())
    assert targets[:10] == [None] * 10  # before the dwell nothing waits
    first, *_ = (tgt for tgt in targets if tgt is not None)
    assert first.hazard == "no_helmet" and first.key == "p1" and first.reason == "cut"
    assert first.pan_deg == pytest.approx(6.0) and first.tilt_deg == -10.0 and first.size_deg == 3.0
    assert first.waiting_since == pytest.approx(1.0)
    assert targets[12].pan_deg == pytest.approx(6.2)  # follows the latest observation
    assert targets[13:] == [None] * 7  # asked on the fourth try: nothing waits any more


def test_the_look_target_unseen_waits_for_the_camera_until_the_wait_is_over() -> None:
    """A camera steering to the waiting event smears it and the detector loses it for a while:
    the event it was sent to is not raised unasked after WAIT_UNSEEN_S but asked about once seen
    again; never seen again though the camera looks right at it, sharp, it is forgotten when
    vlm_max_wait_s is over (the detector no longer finds the hazard there)."""
    for back in (True, False):
        calls: list[float] = []
        manager = _waiting_manager([NotYet("cut"), _vlm(False)], calls)
        out: list[tuple[float, Emitted]] = []
        for k in range(60):
            t = round(0.1 * k, 1)
            seen = k <= 10 or (back and k >= 25)  # ripe at 1.0 s, unseen 1.1-2.4 s while turning
            wall = WALL0 + timedelta(seconds=t)
            emitted = manager.update([_obs()] if seen else [], wall, FRAME, PTZPose(5, -10, 4), t)
            out += [(t, e) for e in emitted]
            manager.look_target()  # the camera loop asks on every control step
        assert out == []
        if back:
            assert len(calls) == 2  # asked when seen again: contradicted
        else:
            assert manager.vlm_counts == {"waited": 1, "vanished_in_view": 1}


def test_an_event_that_never_gets_a_judgeable_view_goes_out_unasked_after_the_wait() -> None:
    calls: list[float] = []
    manager = _waiting_manager([NotYet("blurred")], calls)
    out = _run(manager, [(round(0.1 * k, 1), [_obs()]) for k in range(40)])
    (t, raised), *_ = out
    assert raised.state == "raised" and raised.alert["vlm"] is None
    assert t == pytest.approx(1.0 + 2.0)  # the dwell, then vlm_max_wait_s
    assert manager.vlm_counts == {"waited": 1, "unasked_after_wait": 1}
    _check([e for _, e in out])


def test_an_event_out_of_view_before_the_gate_could_ask_goes_out_unasked() -> None:
    """Waiting for a judgeable view never drops a ripe event whose place left the view: the
    gate may suppress only on a confident contradiction (DESIGN.md)."""
    calls: list[float] = []
    manager = _waiting_manager([NotYet("blurred")], calls)
    seen = [(round(0.1 * k, 1), [_obs(conf=0.9 - 0.01 * k)], AT_OBJECT) for k in range(15)]
    gone: list[tuple[float, list[HazardObservation], PTZPose]] = [
        (round(1.5 + 0.1 * k, 1), [], AWAY) for k in range(80)
    ]
    out = _run_posed(manager, seen + gone)
    (t, raised), *rest = out
    assert raised.state == "raised" and raised.alert["vlm"] is None
    assert t == pytest.approx(1.4 + 0.3, abs=0.01)  # the first frame unseen for WAIT_UNSEEN_S
    assert raised.alert["confidence"] == pytest.approx(0.76)  # the last sighting's evidence
    assert [e.state for _, e in rest] == ["cleared"]
    assert manager.vlm_counts == {"waited": 1, "unasked_out_of_view": 1}
    _check([e for _, e in out])


@pytest.mark.parametrize("blurred", [False, True])
def test_a_waiting_event_no_longer_detected_in_a_sharp_view_is_forgotten(blurred: bool) -> None:
    """The camera still looks at the event's place and the detector no longer finds the hazard
    there: the detections stopped supporting it, and it is forgotten after max_gap_s like any
    pending event — not raised unasked when the camera turns away later. A smeared frame (the
    camera turning) is no such evidence: the event left the view and goes out unasked."""
    calls: list[float] = []
    manager = _waiting_manager([NotYet("blurred")], calls)
    seen = [(round(0.1 * k, 1), [_obs()], AT_OBJECT) for k in range(15)]
    if blurred:  # a fast pan across the place (the blur estimate is far over 8 px), then away
        shaky = [PTZPose(5.0 + (3.0 if k % 2 else 0.0), -10.0, 4.0) for k in range(5)]
    else:
        shaky = [AT_OBJECT] * 5
    still = [(round(1.5 + 0.1 * k, 1), [], pose) for k, pose in enumerate(shaky)]
    away = [(round(2.0 + 0.1 * k, 1), [], AWAY) for k in range(40)]
    out = _run_posed(manager, seen + still + away)
    if blurred:
        assert [(t, e.state) for t, e in out][:1] == [(1.7, "raised")]  # unseen 0.3 s
        assert manager.vlm_counts == {"waited": 1, "unasked_out_of_view": 1}
    else:
        assert out == []
        assert manager.vlm_counts == {"waited": 1, "vanished_in_view": 1}


def test_a_ripe_event_waiting_for_a_view_goes_out_unasked_when_the_agent_stops() -> None:
    """Stopping (a restart for an update) is no reason to drop a ripe hazard the VLM could not
    judge yet; one the detector stopped finding in a sharp view is not raised."""
    for vanished in (False, True):
        calls: list[float] = []
        manager = _waiting_manager([NotYet("cut")], calls)
        seen = [(round(0.1 * k, 1), [_obs()], AT_OBJECT) for k in range(15)]  # ripe at 1.0 s
        still = [(round(1.5 + 0.1 * k, 1), [], AT_OBJECT) for k in range(4 if vanished else 0)]
        assert _run_posed(manager, seen + still) == []
        out = manager.flush(WALL0 + timedelta(seconds=2.0), t_site=2.0)
        if vanished:
            assert out == [] and manager.vlm_counts == {"waited": 1}
            continue
        (raised,) = out
        assert raised.state == "raised" and raised.alert["vlm"] is None
        assert manager.vlm_counts == {"waited": 1, "unasked_at_stop": 1}
        assert manager.flush(WALL0 + timedelta(seconds=2.1)) == []  # once
        _check([raised])


class _InFlight:
    """A question in flight that the gate answers on the ``after``-th poll (None: never)."""

    question = "Is the worker wearing a helmet?"

    def __init__(self, answer: VlmCheck, after: int | None):
        self.answer, self.after, self.polls = answer, after, 0

    def poll(self) -> VlmCheck | None:
        self.polls += 1
        return self.answer if self.after is not None and self.polls >= self.after else None


@pytest.mark.parametrize(("answer", "after"), [(True, 3), (False, 3), (True, None)])
def test_a_question_in_flight_when_the_agent_stops_is_waited_for_then_goes_out(
    answer: bool, after: int | None
) -> None:
    question = _InFlight(_vlm(answer), after)
    rules = dict(FAST, no_helmet=HazardRuleSpec(dwell_s=1.0, cooldown_s=5.0, require_vlm=True))
    manager = _manager(rules=rules, vlm_gate=lambda *_: question)
    assert _run(manager, [(round(0.1 * k, 1), [_obs()]) for k in range(12)]) == []
    assert manager.open_events()[0]["status"] == "verifying"
    out = manager.flush(WALL0 + timedelta(seconds=1.2), wait_s=0.2, sleep=lambda _: None)
    if after is None:  # never answered: out as a timeout once the wait is over
        (raised,) = out
        assert raised.alert["vlm"] == {
            "question": _InFlight.question,
            "answer": None,
            "confirmed": None,
            "latency_ms": None,
            "error": "timeout",
        }
        assert manager.vlm_counts == {"unanswered_at_stop": 1}
        _check([raised])
    elif answer:
        (raised,) = out
        assert raised.alert["vlm"] == _vlm(True) and question.polls == 3
    else:
        assert out == []  # the answer came within the wait: a confident contradiction


def test_the_gate_gets_each_frames_motion_blur_estimate_from_the_poses() -> None:
    calls: list[float] = []
    rules = dict(FAST, no_helmet=HazardRuleSpec(dwell_s=0.0, cooldown_s=5.0, require_vlm=True))

    def gate(obs: HazardObservation, frame: np.ndarray, pose: PTZPose, blur_px: float) -> Any:
        calls.append(blur_px)
        return NotYet("recording")

    manager = _manager(rules=rules, vlm_gate=gate, exposure_s=0.01)
    wall = WALL0
    # 1280 px over 60 deg / 4 = 15 deg: 85.3 px per degree at 4x
    manager.update([_obs()], wall, FRAME, PTZPose(178.0, -10.0, 4.0), 0.0)
    manager.update([_obs()], wall, FRAME, PTZPose(-180.0, -10.0, 4.0), 0.1)  # 20 deg/s over ±180
    manager.update([_obs()], wall, FRAME, PTZPose(-180.0, -10.0, 4.0), 0.2)  # still
    manager.update([_obs()], wall, FRAME, PTZPose(-177.6, -13.2, 4.0), 0.3)  # 4 deg: 40 deg/s
    px_per_deg = FRAME.shape[1] / 15.0
    assert calls == pytest.approx([0.0, 20 * 0.01 * px_per_deg, 0.0, 40 * 0.01 * px_per_deg])
    with pytest.raises(ValueError, match="exposure_s"):
        _manager(exposure_s=-1.0)


def test_vlm_gate_is_not_asked_when_the_rule_does_not_require_it() -> None:
    def gate(*_: Any) -> VlmCheck | None:
        raise AssertionError("asked")

    out = _run(_manager(vlm_gate=gate), [(0.1 * k, [_obs()]) for k in range(20)])
    assert [e.state for _, e in out] == ["raised"]


def test_snapshot_scales_big_frames_and_leaves_the_frame_alone() -> None:
    frame = np.zeros((2160, 3840, 3), dtype=np.uint8)
    jpeg, w, h = render_snapshot(frame, (0.1, 0.1, 0.2, 0.3), "no_vest 0.80")
    assert (w, h) == (1280, 720) and jpeg[:2] == b"\xff\xd8"
    assert not frame.any()
    with pytest.raises(ValueError, match="frame"):
        render_snapshot(np.zeros((10, 10, 3), np.float32), (0, 0, 1, 1), "x")


# ------------------------------------------------------------------ end to end, virtual site
def _virtual_site_run(poses: list[PTZPose] | None, seconds: float = 20.0) -> dict[str, Any]:
    """Seed 2's no_helmet-1: a worker without a helmet at a work spot, seen at ~220 ref px."""
    from edge.sim.generate import generate_site
    from edge.sim.perception import SimulatedPerception
    from edge.sim.ptz import AbsoluteMove
    from edge.sim.virtual import VirtualSite

    spec = generate_site(2, duration_s=300.0)
    t0 = 56.2
    probe = VirtualSite(spec)
    event = next(e for e in probe.site.hazards if e.id == "no_helmet-1")
    xy = probe.site.workers_at(t0).xy[event.worker]
    cam = spec.camera
    mount = (cam.position[0], cam.position[1], cam.height_m)
    pan, tilt, rng = pan_tilt_of_point(mount, cam.heading_deg, np.array([*xy, 0.9]))
    zoom = float(zoom_for_size(float(rng), 1.75, 220.0))
    base = PTZPose(float(pan), float(tilt), zoom)
    site = VirtualSite(spec, start_pose=base)
    site.head.t = t0
    perception = SimulatedPerception(seed=2)
    tracker = WorldTracker(cam)
    rules = HazardRules()
    manager = AlertManager(
        MemoryStateStore(),
        site_id="virtual",
        device_id="sim",
        camera_id=cam.id,
        snapshot_topic=lambda a: f"sitehawk/v1/virtual/sim/snapshot/{a}",
        agent_version="test",
    )
    emitted: list[Emitted] = []
    zooms = []
    w, h = 640, 360
    for k in range(int(seconds * 10)):
        if poses is not None and k % 15 == 0:
            target = poses[(k // 15) % len(poses)]
            site.command(AbsoluteMove(base.pan_deg + target.pan_deg, base.tilt_deg, target.zoom))
        frame, truth = site.capture(w, h)
        assert truth is not None
        zooms.append(frame.pose.zoom)
        detections = perception.detect(truth, frame.index)
        tracks = tracker.update(detections, frame.pose, w, h, frame.t)
        wall = WALL0 + timedelta(seconds=frame.t)
        emitted += manager.update(
            rules.update(tracks, wall), wall, frame.image, frame.pose, frame.t
        )
        site.advance(0.1)
    assert event.active(t0) and event.active(t0 + seconds)
    return {
        "emitted": emitted,
        "pan": float(pan),
        "tilt": float(tilt),
        "zoom": zoom,
        "zoom_range": max(zooms) / min(zooms),
    }


def test_virtual_site_fixed_view_raises_exactly_one_no_helmet_alert() -> None:
    run = _virtual_site_run(None)
    emitted = run["emitted"]
    _check(emitted)
    no_helmet = _raised(emitted, "no_helmet")
    assert len(no_helmet) == 1, [e.alert for e in emitted]
    loc = no_helmet[0].alert["location"]
    assert abs(loc["pan_deg"] - run["pan"]) < 2.0 and abs(loc["tilt_deg"] - run["tilt"]) < 2.0
    assert loc["zoom"] == pytest.approx(run["zoom"], rel=1e-3)
    assert _cleared(emitted) == []


def test_virtual_site_panning_and_zooming_keeps_one_alert() -> None:
    # the camera keeps moving around the worker: ±1.5 deg pans, zoom 0.6x-1.4x of the base
    tour = [PTZPose(0.0, 0.0, 1.0), PTZPose(1.5, 0.0, 0.8), PTZPose(-1.0, 0.0, 1.4)]
    run = _virtual_site_run(None, seconds=1.0)  # only for the base zoom
    poses = [PTZPose(p.pan_deg, 0.0, run["zoom"] * p.zoom) for p in tour]
    moving = _virtual_site_run(poses, seconds=30.0)
    assert moving["zoom_range"] > 1.5  # the camera really zoomed
    emitted = moving["emitted"]
    _check(emitted)
    assert len(_raised(emitted, "no_helmet")) == 1, [e.alert for e in emitted]
    assert _cleared(emitted) == []
