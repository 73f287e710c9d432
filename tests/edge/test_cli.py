"""`sitehawk-edge`: render, site generate/show, bad site files; the panorama and its footprints."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from edge.cli import main
from edge.geometry import PTZPose, pan_tilt_of_point
from edge.sim.generate import generate_site
from edge.sim.panorama import Panorama, render_panorama, visible_pan_range
from edge.sim.render import Renderer
from edge.sim.spec import SiteSpec
from edge.sim.world import Site

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
# the command line
def test_import_is_light() -> None:
    """`sitehawk-edge --help` must work on a bare device: no torch, OpenCV or numpy at import."""
    code = (
        "import sys, edge.cli\n"
        "heavy = [m for m in ('torch', 'cv2', 'numpy', 'pydantic') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "try:\n"
        "    edge.cli.main(['--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "usage: sitehawk-edge" in out.stdout
    for command in ("render", "site"):
        assert command in out.stdout


def test_render_writes_png_of_expected_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pictures" / "site.png"  # the folder is created
    assert main(["render", "--seed", "7", "--out", str(out), "--width", "640", "--t", "60"]) == 0
    printed = capsys.readouterr().out
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = cv2.imread(str(out))
    assert img is not None and img.shape[1] == 640
    match = re.search(r"\((\d+)x(\d+) px", printed)
    assert match is not None, printed
    assert (int(match[1]), int(match[2])) == (img.shape[1], img.shape[0])
    assert 0.5 * 640 < img.shape[0] < 0.8 * 640
    assert img.std() > 20  # a picture, not a blank canvas
    # the summary names the site and the hazards active at t (seed 7 has two at t=60)
    site = Site(generate_site(7))
    for hz in site.active_hazards(60.0):
        assert hz.id in printed
    assert f"{len(site.spec.workers)} workers" in printed


def test_site_generate_show_render_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "site.yaml"
    gen = ["site", "generate", "--seed", "3", "--out", str(path), "--duration", "120"]
    assert main([*gen, "--workers", "12"]) == 0
    assert SiteSpec.load(path) == generate_site(3, duration_s=120.0, num_workers=12)
    capsys.readouterr()
    assert main(["site", "show", str(path)]) == 0
    shown = capsys.readouterr().out
    assert "sitehawk.site/1" in shown
    assert re.search(r"workers\s+12\b", shown)
    for hz in Site(SiteSpec.load(path)).hazards:
        assert hz.id in shown
    # an edited layout is what `site show` and `render --site` use: raise the camera pole
    spec = SiteSpec.load(path)
    spec.camera.height_m = 25.0
    spec.save(path)
    assert main(["site", "show", str(path)]) == 0
    assert "25 m high" in capsys.readouterr().out
    out = tmp_path / "edited.png"
    assert main(["render", "--site", str(path), "--out", str(out), "--width", "480"]) == 0
    assert cv2.imread(str(out)).shape[1] == 480


def _bad_site(tmp_path: Path) -> Path:
    spec = generate_site(5, duration_s=60.0, num_workers=3)
    raw = spec.model_dump(mode="json")
    raw["camera"]["height_m"] = -3
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("command", ["render", "show"])
def test_bad_site_file_exits_2_naming_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    bad = _bad_site(tmp_path)
    argv = (
        ["render", "--site", str(bad), "--out", str(tmp_path / "x.png")]
        if command == "render"
        else ["site", "show", str(bad)]
    )
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{bad}:camera.height_m:" in err
    assert "Traceback" not in err
    assert not (tmp_path / "x.png").exists()


def test_bad_site_file_from_the_shell_has_no_traceback(tmp_path: Path) -> None:
    bad = _bad_site(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "edge.cli", "site", "show", str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert f"{bad}:camera.height_m:" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["render", "--site", "no-such-site.yaml", "--out", "x.png"], "no-such-site.yaml: no such"),
        (["render", "--seed", "7", "--t", "-5", "--out", "x.png"], "--t must lie in"),
        (["render", "--seed", "7", "--width", "100", "--out", "x.png"], "--width"),
    ],
)
def test_bad_arguments_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# the panorama
@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(Site(generate_site(7)))


@pytest.fixture(scope="module")
def panorama(renderer: Renderer) -> Panorama:
    # about 10.7 px/deg: the resolution of a 640-wide 1x view
    pan0, pan1 = visible_pan_range(renderer)
    return render_panorama(renderer, 60.0, width_px=int(round((pan1 - pan0) * 640 / 60)))


def test_panorama_covers_the_site_within_the_limits(renderer: Renderer, panorama: Panorama) -> None:
    spec = renderer.spec
    lim = spec.camera.limits
    assert panorama.tilt_range[1] == lim.tilt_max_deg
    assert panorama.tilt_range[0] == pytest.approx(lim.tilt_min_deg, abs=0.5 / panorama.px_per_deg)
    assert lim.pan_min_deg <= panorama.pan_range[0] < panorama.pan_range[1] <= lim.pan_max_deg
    w, d = spec.size_m
    corners = np.array([[0, 0, 0], [w, 0, 0], [w, d, 0], [0, d, 0]], dtype=np.float64)
    pan, _, _ = pan_tilt_of_point(renderer.cam_pos, renderer.heading, corners)
    assert (pan > panorama.pan_range[0]).all() and (pan < panorama.pan_range[1]).all()
    assert panorama.height == round(70 * panorama.px_per_deg)
    assert panorama.to_pixel(0.0, panorama.tilt_range[0])[1] == pytest.approx(panorama.height)


def test_pan_tilt_pixel_mapping_round_trips(panorama: Panorama) -> None:
    rng = np.random.default_rng(0)
    pan = rng.uniform(*panorama.pan_range, 200)
    tilt = rng.uniform(*panorama.tilt_range, 200)
    x, y = panorama.to_pixel(pan, tilt)
    assert (x >= 0).all() and (x <= panorama.width).all()
    assert (y >= 0).all() and (y <= panorama.height).all()
    back_pan, back_tilt = panorama.to_pan_tilt(x, y)
    np.testing.assert_allclose(back_pan, pan, atol=1e-9)
    np.testing.assert_allclose(back_tilt, tilt, atol=1e-9)
    # the edges are the ranges; scalars stay scalars; pan wraps
    assert panorama.to_pixel(panorama.pan_range[0], panorama.tilt_range[1]) == (0.0, 0.0)
    x0, _ = panorama.to_pixel(10.0, 0.0)
    x1, _ = panorama.to_pixel(10.0 + 360.0, 0.0)
    assert isinstance(x0, float) and x0 == pytest.approx(x1)
    # resizing keeps the mapping, scaled
    half = panorama.resized(panorama.width // 2)
    hx, hy = half.to_pixel(5.0, -12.0)
    fx, fy = panorama.to_pixel(5.0, -12.0)
    assert hx == pytest.approx(fx * half.width / panorama.width, abs=1e-6)
    assert hy == pytest.approx(fy * half.px_per_deg / panorama.px_per_deg, abs=1e-6)


def test_panorama_shows_what_the_camera_sees(renderer: Renderer, panorama: Panorama) -> None:
    """A pinhole view and the panorama sampled through that view's rays show the same scene."""
    pose = PTZPose(12.0, -14.0, 1.0)
    width, height = 640, 360
    frame, _ = renderer.render(pose, 60.0, width, height, truth=False, noise=False)

    def difference(p: PTZPose) -> float:
        """Mean |render at ``pose`` − panorama sampled through the rays of a view at ``p``|."""
        cv = renderer.view(p, width, height)
        u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
        pan, tilt = cv.pixel_to_pan_tilt(np.stack([u, v], -1))
        x, y = panorama.to_pixel(pan, tilt)
        sampled = cv2.remap(
            panorama.image,
            (x - 0.5).astype(np.float32),
            (y - 0.5).astype(np.float32),
            cv2.INTER_LINEAR,
        )
        return float(np.abs(sampled.astype(np.float32) - frame.image.astype(np.float32)).mean())

    aligned = difference(pose)
    shifted = difference(PTZPose(pose.pan_deg + 1.5, pose.tilt_deg - 1.0, 1.0))
    assert aligned < 6.0
    assert shifted > 2 * aligned


def test_footprint_lands_where_the_camera_points(panorama: Panorama) -> None:
    for pose in (PTZPose(12.0, -14.0, 1.0), PTZPose(-20.0, -5.0, 4.0), PTZPose(30.0, -30.0, 12.0)):
        poly = panorama.footprint(pose, 1280, 720, points_per_edge=16)
        cx, cy = panorama.to_pixel(pose.pan_deg, pose.tilt_deg)
        # left/right symmetric about the pan; top-middle and bottom-middle symmetric in tilt
        assert (poly[:, 0].min() + poly[:, 0].max()) / 2 == pytest.approx(cx, abs=0.5)
        top_mid, bottom_mid = poly[8], poly[16 * 2 + 8]
        assert top_mid[0] == pytest.approx(cx, abs=0.5)
        assert (top_mid[1] + bottom_mid[1]) / 2 == pytest.approx(cy, abs=0.5)
        # the middle row spans the horizontal field of view, widened by the tilt
        half = np.radians(60.0 / pose.zoom / 2)
        pan_half = np.degrees(np.arctan(np.tan(half) / np.cos(np.radians(pose.tilt_deg))))
        right_mid, left_mid = poly[16 + 8], poly[16 * 3 + 8]
        assert right_mid[0] - left_mid[0] == pytest.approx(
            2 * pan_half * panorama.px_per_deg, abs=0.5
        )
    wide = panorama.footprint(PTZPose(12.0, -14.0, 1.0)).astype(np.float32)
    narrow = panorama.footprint(PTZPose(12.0, -14.0, 4.0))
    for x, y in narrow:
        assert cv2.pointPolygonTest(wide, (float(x), float(y)), False) > 0


def test_footprint_is_drawn_on_a_copy(panorama: Panorama) -> None:
    before = panorama.image.copy()
    pose = PTZPose(12.0, -14.0, 4.0)
    framed = panorama.with_footprint(pose, color=(255, 0, 255), label="4x")
    np.testing.assert_array_equal(panorama.image, before)
    changed = np.argwhere((framed != before).any(axis=2))
    poly = panorama.footprint(pose)
    lo, hi = poly.min(axis=0) - 30, poly.max(axis=0) + 3
    # every changed pixel is on the outline or its label, near the footprint
    assert len(changed)
    assert (changed[:, 1] >= lo[0]).all() and (changed[:, 1] <= hi[0]).all()
    assert (changed[:, 0] >= lo[1]).all() and (changed[:, 0] <= hi[1]).all()
    # the outline passes through the top-middle of the footprint in the drawn colour
    tx, ty = poly[8]
    patch = framed[int(ty) - 2 : int(ty) + 3, int(tx) - 2 : int(tx) + 3].reshape(-1, 3)
    assert any(p[0] > 200 and p[1] < 80 and p[2] > 200 for p in patch)


def test_annotate_boxes_each_active_hazard(renderer: Renderer, panorama: Panorama) -> None:
    site = renderer.site
    marked = panorama.annotate(site)
    boxes = panorama.worker_boxes(site)
    assert boxes.shape == (site.num_workers, 4)
    for hz in site.active_hazards(panorama.t):
        assert hz.worker is not None
        x0, y0, x1, y1 = boxes[hz.worker]
        # the worker's box lies inside the panorama and its outline was drawn
        assert 0 <= x0 < x1 <= panorama.width and 0 <= y0 < y1 <= panorama.height
        ring = marked[int(y0) - 5 : int(y1) + 6, int(x0) - 5 : int(x1) + 6]
        before = panorama.image[int(y0) - 5 : int(y1) + 6, int(x0) - 5 : int(x1) + 6]
        assert (ring != before).any()
