"""Kinematics of the virtual PTZ head: speeds, latency, absolute and continuous moves, limits."""

from __future__ import annotations

import math

import pytest

from edge.geometry import PTZPose
from edge.sim.ptz import AbsoluteMove, ContinuousMove, PTZHead, RelativeMove, Stop, travel_time_s
from firmware_config.camera import PTZLimitsSpec

LIMITS = PTZLimitsSpec()  # 120 °/s pan, 90 °/s tilt, 1.7 log-units/s zoom, 0.1 s latency
START = PTZPose(0.0, -20.0, 1.0)


def _head(**limits: float) -> PTZHead:
    return PTZHead(PTZLimitsSpec(**limits) if limits else LIMITS, START)


def _run(head: PTZHead, seconds: float, dt: float = 0.01) -> None:
    for _ in range(int(round(seconds / dt))):
        head.advance(dt)


# ------------------------------------------------------------------ speed limits
@pytest.mark.parametrize("fraction", [1.0, 0.5, -0.25])
def test_continuous_move_runs_at_the_fraction_of_max_speed(fraction: float) -> None:
    head = _head(latency_s=0.0)
    head.command(ContinuousMove(pan=fraction, tilt=fraction, zoom=abs(fraction), timeout_s=5.0))
    head.advance(0.2)
    pose = head.pose
    assert pose.pan_deg == pytest.approx(120.0 * fraction * 0.2)
    assert pose.tilt_deg == pytest.approx(-20.0 + 90.0 * fraction * 0.2)
    assert math.log(pose.zoom) == pytest.approx(1.7 * abs(fraction) * 0.2)
    assert head.rate_dps == pytest.approx((120.0 * fraction, 90.0 * fraction))


def test_velocities_beyond_full_speed_are_clipped() -> None:
    head = _head(latency_s=0.0)
    head.command(ContinuousMove(pan=3.0, tilt=-7.0, timeout_s=5.0))
    head.advance(0.2)
    assert head.pose.pan_deg == pytest.approx(24.0)
    assert head.pose.tilt_deg == pytest.approx(-20.0 - 18.0)


def test_absolute_move_axes_travel_at_their_own_maximum_speed() -> None:
    head = _head(latency_s=0.0)
    head.command(AbsoluteMove(100.0, -50.0, 20.0))
    head.advance(0.25)
    assert head.pose.pan_deg == pytest.approx(30.0)  # 120 °/s
    assert head.pose.tilt_deg == pytest.approx(-20.0 - 22.5)  # 90 °/s
    assert math.log(head.pose.zoom) == pytest.approx(1.7 * 0.25)


# ------------------------------------------------------------------ latency
def test_commands_take_effect_after_the_latency() -> None:
    head = _head(latency_s=0.3)
    head.command(ContinuousMove(pan=1.0, timeout_s=5.0))
    head.advance(0.29)
    assert head.pose.pan_deg == 0.0
    assert head.moving  # a command is pending
    head.advance(0.21)  # t = 0.5: moving for 0.2 s
    assert head.pose.pan_deg == pytest.approx(24.0)


def test_latency_applies_within_a_single_long_step() -> None:
    head = _head(latency_s=0.1)
    head.command(AbsoluteMove(12.0, -20.0, 1.0))
    head.advance(0.15)  # 0.1 s of latency, then 0.05 s at 120 °/s
    assert head.pose.pan_deg == pytest.approx(6.0)


# ------------------------------------------------------------------ absolute moves pay travel time
@pytest.mark.parametrize(
    "target",
    [PTZPose(90.0, -20.0, 1.0), PTZPose(-30.0, -55.0, 2.0), PTZPose(5.0, -18.0, 30.0)],
)
def test_absolute_move_takes_travel_time(target: PTZPose) -> None:
    head = _head()
    expected = head.travel_time_s(target)
    assert expected == pytest.approx(travel_time_s(LIMITS, START, target))
    assert expected == pytest.approx(
        0.1
        + max(
            abs(target.pan_deg) / 120.0,
            abs(target.tilt_deg + 20.0) / 90.0,
            math.log(target.zoom) / 1.7,
        )
    )
    head.command(AbsoluteMove(target.pan_deg, target.tilt_deg, target.zoom))
    dt, elapsed = 0.005, 0.0
    while (head.pose.pan_deg, head.pose.tilt_deg) != (target.pan_deg, target.tilt_deg) or (
        head.pose.zoom != pytest.approx(target.zoom)
    ):
        head.advance(dt)
        elapsed += dt
        assert elapsed < 60.0
    assert elapsed == pytest.approx(expected, abs=dt + 1e-9)
    assert not head.moving


def test_absolute_move_beyond_the_limits_stops_at_them() -> None:
    head = _head(latency_s=0.0)
    head.command(AbsoluteMove(400.0, -90.0, 100.0))
    _run(head, 5.0, dt=0.1)
    assert head.pose == PTZPose(LIMITS.pan_max_deg, LIMITS.tilt_min_deg, pytest.approx(30.0))  # type: ignore[arg-type]


# ------------------------------------------------------------------ continuous moves
def test_continuous_move_stops_at_its_timeout() -> None:
    head = _head(latency_s=0.0)
    head.command(ContinuousMove(pan=-1.0, timeout_s=0.35))
    _run(head, 2.0, dt=0.1)
    assert head.pose.pan_deg == pytest.approx(-120.0 * 0.35)
    assert not head.moving
    assert head.rate_dps == (0.0, 0.0)


def test_stop_halts_a_move_in_progress() -> None:
    head = _head(latency_s=0.0)
    head.command(AbsoluteMove(150.0, -20.0, 1.0))
    head.advance(0.5)
    head.command(Stop())
    head.advance(1.0)
    assert head.pose.pan_deg == pytest.approx(60.0)
    assert not head.moving


def test_relative_moves_add_to_the_target_in_progress() -> None:
    head = _head(latency_s=0.0)
    head.command(RelativeMove(pan_deg=10.0))
    head.advance(0.01)
    head.command(RelativeMove(pan_deg=10.0, zoom_factor=2.0))
    _run(head, 1.0)
    assert head.pose.pan_deg == pytest.approx(20.0)
    assert head.pose.zoom == pytest.approx(2.0)


# ------------------------------------------------------------------ limits
def test_continuous_move_clamps_at_every_limit() -> None:
    head = _head(latency_s=0.0)
    head.command(ContinuousMove(pan=1.0, tilt=1.0, zoom=1.0, timeout_s=10.0))
    _run(head, 5.0, dt=0.1)
    assert head.pose.pan_deg == LIMITS.pan_max_deg
    assert head.pose.tilt_deg == LIMITS.tilt_max_deg
    assert head.pose.zoom == pytest.approx(LIMITS.zoom_max)
    head.command(ContinuousMove(pan=-1.0, tilt=-1.0, zoom=-1.0, timeout_s=10.0))
    _run(head, 5.0, dt=0.1)
    assert head.pose.pan_deg == LIMITS.pan_min_deg
    assert head.pose.tilt_deg == LIMITS.tilt_min_deg
    assert head.pose.zoom == pytest.approx(1.0)


def test_a_start_pose_outside_the_limits_is_clamped() -> None:
    head = PTZHead(LIMITS, PTZPose(200.0, 45.0, 0.5))
    assert head.pose == PTZPose(170.0, 10.0, 1.0)


def test_custom_limits_are_honoured() -> None:
    head = _head(pan_min_deg=-30.0, pan_max_deg=30.0, pan_speed_dps=10.0, latency_s=0.0)
    head.command(ContinuousMove(pan=1.0, timeout_s=10.0))
    head.advance(1.0)
    assert head.pose.pan_deg == pytest.approx(10.0)
    _run(head, 5.0, dt=0.5)
    assert head.pose.pan_deg == 30.0


# ------------------------------------------------------------------ travel accounting
def test_travel_deg_accumulates_pan_and_tilt_travel() -> None:
    head = _head(latency_s=0.0)
    assert head.travel_deg == 0.0
    head.command(AbsoluteMove(30.0, -20.0, 1.0))
    _run(head, 1.0)
    assert head.travel_deg == pytest.approx(30.0)
    head.command(AbsoluteMove(0.0, -40.0, 4.0))  # back 30° of pan, 20° of tilt; zoom is free
    _run(head, 1.0)
    assert head.travel_deg == pytest.approx(80.0)
    head.command(ContinuousMove(pan=0.5, timeout_s=0.5))
    _run(head, 1.0)
    assert head.travel_deg == pytest.approx(110.0)
    head.command(ContinuousMove(zoom=1.0, timeout_s=0.5))
    _run(head, 1.0)
    assert head.travel_deg == pytest.approx(110.0)
