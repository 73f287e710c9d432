"""VideoSource: a real video file and real network streams decoded by OpenCV's FFmpeg backend.

The videos are written by the tests with cv2.VideoWriter (MJPG in AVI); the "stream" is that
file served over HTTP on loopback (FFmpeg reads it like a network camera), so reconnects are
exercised against a real server; a closed loopback port stands in for a dead RTSP camera.
"""

from __future__ import annotations

import functools
import http.server
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.camera.onvif import OnvifPTZ, OnvifSettings
from edge.camera.source import SourceEnded, frame_problem
from edge.camera.stream import RTSP_OPTIONS_ENV, VideoSource, mask_url
from edge.camera.virtual import VirtualCamera
from edge.geometry import PTZPose
from edge.sim.virtual import VirtualSite

NUM_FRAMES = 12
SIZE = (96, 64)  # width, height
FPS = 10.0


def _write_video(path: Path, num_frames: int = NUM_FRAMES) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), FPS, SIZE)
    assert writer.isOpened(), "OpenCV cannot write MJPG/AVI here"
    for i in range(num_frames):
        image = np.full((SIZE[1], SIZE[0], 3), 20 * i % 256, dtype=np.uint8)
        cv2.putText(image, str(i), (10, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 255), 2)
        writer.write(image)
    writer.release()
    return path


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return _write_video(tmp_path / "site.avi")


class FakeClock:
    """Monotonic time that moves only when the source sleeps (no waiting in tests)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _read_all(source: VideoSource) -> list:
    frames = []
    with pytest.raises(SourceEnded):
        for _ in range(10 * NUM_FRAMES):
            frame = source.read()
            if frame is not None:
                frames.append(frame)
    return frames


def test_a_video_file_gives_every_frame_with_its_time_then_ends(video: Path) -> None:
    pose = PTZPose(12.0, -8.0, 2.0)
    source = VideoSource(str(video), camera_id="cam7", pose=pose)
    assert not source.is_stream
    frames = _read_all(source)
    assert len(frames) == NUM_FRAMES
    assert [f.index for f in frames] == list(range(NUM_FRAMES))
    assert [round(f.t, 3) for f in frames] == [round(i / FPS, 3) for i in range(NUM_FRAMES)]
    assert all(frame_problem(f) is None for f in frames)
    assert all(f.pose == pose and f.image.shape == (SIZE[1], SIZE[0], 3) for f in frames)
    # the frames are the ones written: brightness grows with the index
    means = [float(f.image[:, :5].mean()) for f in frames]
    assert means == sorted(means) and means[-1] - means[0] > 100
    source.close()
    with pytest.raises(SourceEnded):
        source.read()


def test_a_missing_file_ends_the_source_with_its_name(tmp_path: Path) -> None:
    source = VideoSource(str(tmp_path / "nope.avi"), camera_id="cam1")
    with pytest.raises(SourceEnded, match="nope.avi"):
        source.read()


def test_a_corrupt_file_never_passes_a_bad_frame_on(video: Path) -> None:
    data = bytearray(video.read_bytes())
    # smash the middle of the file (inside the JPEG payloads of some frames)
    middle = len(data) // 2
    data[middle : middle + 2000] = os.urandom(2000)
    video.write_bytes(bytes(data))
    source = VideoSource(str(video), camera_id="cam1")
    frames = _read_all(source)
    assert 0 < len(frames) <= NUM_FRAMES
    assert all(frame_problem(f) is None for f in frames)


def test_the_pose_comes_from_the_ptz_driver(video: Path) -> None:
    site = VirtualSite.from_seed(5, duration_s=30.0)
    camera = VirtualCamera(site, size=(64, 36))
    source = VideoSource(str(video), ptz=camera.ptz, pose_max_age_s=0.0)
    first = source.read()
    assert first is not None and first.pose == site.pose
    camera.ptz.absolute_move(40.0, -20.0, 3.0)
    for _ in range(30):
        camera.read()  # the head moves with site time
    later = source.read()
    assert later is not None
    assert later.pose.pan_deg == pytest.approx(40.0) and later.pose.tilt_deg == pytest.approx(-20.0)
    assert later.pose.zoom == pytest.approx(3.0)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_frame_without_a_pose_is_skipped_and_counted(video: Path) -> None:
    # a real ONVIF controller whose camera is not there: GetStatus fails, the frame is skipped
    dead = f"http://127.0.0.1:{_closed_port()}/onvif/device_service"
    site = VirtualSite.from_seed(5, duration_s=30.0)
    ptz = OnvifPTZ(OnvifSettings(dead, timeout_s=0.5, attempts=1), site.spec.camera)
    source = VideoSource(str(video), ptz=ptz)
    assert source.read() is None
    assert source.problems["pose"] == 1


def test_a_dead_rtsp_camera_is_retried_with_a_growing_backoff() -> None:
    clock = FakeClock()
    url = f"rtsp://admin:secret@127.0.0.1:{_closed_port()}/stream1"
    source = VideoSource(
        url, timeout_s=2.0, reconnect_min_s=0.5, reconnect_max_s=2.0, max_wait_s=10.0,
        monotonic=clock.monotonic, sleep=clock.sleep,
    )  # fmt: skip
    assert source.is_stream and "secret" not in source.masked_url
    before = os.environ.get(RTSP_OPTIONS_ENV)
    for _ in range(5):
        assert source.read() is None
    assert os.environ.get(RTSP_OPTIONS_ENV) == before  # the TCP option is set only to open
    assert source.problems["open_failed"] == 5
    assert clock.slept == [0.5, 1.0, 2.0, 2.0]  # doubling, capped
    source.close()


@pytest.fixture
def http_video(video: Path) -> Iterator[tuple[str, http.server.ThreadingHTTPServer]]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(video.parent))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{video.name}", server
    finally:
        server.shutdown()
        server.server_close()


def test_a_stream_that_stops_is_reopened(
    http_video: tuple[str, http.server.ThreadingHTTPServer],
) -> None:
    url, _ = http_video
    clock = FakeClock()
    source = VideoSource(
        url, timeout_s=2.0, reconnect_min_s=1.0, max_wait_s=0.25,
        monotonic=clock.monotonic, sleep=clock.sleep,
    )  # fmt: skip
    assert source.is_stream
    frames = []
    for _ in range(NUM_FRAMES + 1):  # every frame, then the stream stops delivering
        frame = source.read()
        if frame is not None:
            frames.append(frame)
    assert len(frames) == NUM_FRAMES
    assert source.problems["stream_lost"] == 1 and source.reconnects == 0
    # stream frames are stamped with the monotonic clock on arrival
    assert all(f.t == pytest.approx(1000.0) for f in frames)
    # while the backoff runs, read waits at most max_wait_s and gives nothing
    assert source.read() is None
    assert clock.slept == [0.25]
    frame = None
    for _ in range(8):
        frame = source.read()
        if frame is not None:
            break
    assert frame is not None and source.reconnects == 1
    assert frame.index == NUM_FRAMES  # the source's counter goes on
    source.close()


def test_mask_url_hides_only_the_password() -> None:
    assert mask_url("rtsp://u:p%40ss@10.0.0.1:554/s") == "rtsp://u:***@10.0.0.1:554/s"
    assert mask_url("rtsp://10.0.0.1/s") == "rtsp://10.0.0.1/s"
