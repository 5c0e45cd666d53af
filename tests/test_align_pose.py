"""`rcn_keras.align` (aligned face crops) and `rcn_keras.pose` (head pose): templates, the similarity and the
warp on faces with known transforms, pose on a mean face turned by known angles and on real faces rotated
and mirrored, and both through `Landmarker.predict` and `rcn predict`."""

import glob
import json
import math
import pathlib

import numpy as np
import pytest
from PIL import Image

from rcn_keras.align import (ARCFACE_112, align_face, alignment_matrix, mean_face, template, warp)
from rcn_keras.app.cli import main as cli
from rcn_keras.keypoints import FIVE_FROM_68, standard_scheme
from rcn_keras.pose import head_pose, line_of_sight, pose_rotation, project

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "300w"
FACE = np.asarray(mean_face()["points_3d"], np.float64)


def similarity(scale: float, degrees: float, shift) -> np.ndarray:
    t = math.radians(degrees)
    return np.array([[scale * math.cos(t), -scale * math.sin(t), shift[0]],
                     [scale * math.sin(t), scale * math.cos(t), shift[1]]])


def moved(points, matrix):
    return np.asarray(points) @ matrix[:, :2].T + matrix[:, 2]


def dots(size, points, sigma=1.5) -> np.ndarray:
    """A grey image (H, W) with a bright Gaussian dot at each point (pixel centres)."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w))
    for x, y in points:
        img += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))
    return np.round(255 * np.clip(img, 0, 1)).astype(np.uint8)


def dot_centres(img, near, radius=4) -> np.ndarray:
    """The centre of mass of the bright pixels around each point of ``near``."""
    out = []
    for x, y in near:
        x0, y0 = int(round(x)), int(round(y))
        patch = img[y0 - radius:y0 + radius + 1, x0 - radius:x0 + radius + 1].astype(np.float64)
        yy, xx = np.mgrid[y0 - radius:y0 + radius + 1, x0 - radius:x0 + radius + 1]
        out.append([(patch * xx).sum() / patch.sum(), (patch * yy).sum() / patch.sum()])
    return np.array(out)


def test_templates_are_data_with_their_sizes_and_padding():
    np.testing.assert_allclose(template("arcface").points, ARCFACE_112)
    big = template("arcface", 224)
    np.testing.assert_allclose((big.points + 0.5) / 2 - 0.5, ARCFACE_112)
    chip = template("mean68", 150, padding=0.25)
    lo, hi = chip.points.min(0) - (-0.5), chip.points.max(0) + 0.5
    assert chip.num_points == 68 and max(hi - lo) == pytest.approx(150 / 1.5, abs=1e-6)
    np.testing.assert_allclose((chip.points.max(0) + chip.points.min(0)) / 2, [74.5, 74.5], atol=1e-6)
    np.testing.assert_allclose(template("mean5", 150).points, FIVE_FROM_68 @ chip.points)
    for bad, fragment in ((dict(name="dlib"), "not known; known: arcface, mean68, mean5"),
                          (dict(size=8), "from 16 to 4096"), (dict(padding=-1), "padding")):
        with pytest.raises(ValueError, match=fragment):
            template(**bad)


@pytest.mark.parametrize("scale, degrees", [(3.0, 0.0), (1.7, 25.0), (0.6, -40.0)])
def test_a_face_with_a_known_transform_lands_on_the_template(scale, degrees):
    target = template("arcface", 112)
    to_image = np.vstack([similarity(scale, degrees, (200.0, 200.0)), [0, 0, 1]])
    points = moved(target.points, to_image[:2])  # the template's face, moved into a 640 x 600 image
    matrix = alignment_matrix(points, target)
    np.testing.assert_allclose(moved(points, matrix), target.points, atol=1e-6)
    crop = align_face(dots((600, 640), points, sigma=1.5 * scale), points, target)
    assert crop.shape == (112, 112) and crop.dtype == np.uint8  # grey in, grey out
    found = dot_centres(crop, target.points)
    assert np.abs(found - target.points).max() < 1.0, found - target.points
    rgb = np.repeat(dots((600, 640), points, sigma=1.5 * scale)[..., None], 3, axis=-1)
    assert align_face(Image.fromarray(rgb), points, 112).shape == (112, 112, 3)  # colour in, colour out


def test_68_point_faces_meet_5_point_templates_and_bad_faces_are_one_line():
    chip = template("mean68", 200)
    shape68 = moved(chip.points, similarity(2.0, 10.0, (50.0, 20.0)))
    to_arcface = alignment_matrix(shape68, template("arcface"))  # 68 points -> their 5 -> arcface
    np.testing.assert_allclose(to_arcface, alignment_matrix(FIVE_FROM_68 @ shape68, template("arcface")))
    five = FIVE_FROM_68 @ shape68
    back = alignment_matrix(five, chip)  # 5 points onto the 68-point template's 5
    np.testing.assert_allclose(moved(shape68, back), chip.points, atol=1e-6)
    for bad, fragment in ((np.zeros((7, 2)), "5 or 68 points"), (np.full((5, 2), 3.0), "degenerate shape"),
                          (np.full((5, 2), np.nan), "finite points")):
        with pytest.raises(ValueError, match=fragment):
            alignment_matrix(bad, "arcface")
    with pytest.raises(ValueError, match="align=3.5"):
        alignment_matrix(five, 3.5)


def real_faces(limit=60):
    files = sorted(glob.glob(str(SHARED / "helen" / "trainset" / "*.pts")))[:limit]
    if not files:
        pytest.skip("the 300W data is not in ../shared")
    from rcn_keras.data.formats import read_pts

    for f in files:
        with Image.open(f[:-4] + ".jpg") as im:
            size = im.size
        yield read_pts(f, n_points=68) - 1.0, size  # 0-based pixel centres


def test_real_faces_land_where_the_transform_puts_them(capsys):
    """On real faces (their true 68 points): the warp puts each of the 5 points within a pixel of where the
    fitted similarity maps it; how far that is from the template is the face's shape, said below."""
    target = template("arcface")
    residual = []
    for points, (w, h) in real_faces(20):
        five = FIVE_FROM_68 @ points
        matrix = alignment_matrix(points, target)
        mapped = moved(five, matrix)
        scale = math.sqrt(abs(np.linalg.det(matrix[:, :2])))
        crop = align_face(dots((h, w), five, sigma=1.5 / scale), points, target)
        inside = np.all((mapped > 5) & (mapped < 107), axis=1)
        assert np.abs(dot_centres(crop, mapped[inside]) - mapped[inside]).max() < 1.0
        residual.append(np.linalg.norm(mapped - target.points, axis=1).mean())
    with capsys.disabled():
        print(f"\nHELEN faces: mean distance of their 5 points from ArcFace's template {np.mean(residual):.2f} px")
    assert np.median(residual) < 6.0  # a face is not the template: a similarity leaves a few pixels


@pytest.mark.parametrize("yaw, pitch, roll", [(0, 0, 0), (30, 0, 0), (-45, 10, 5), (20, -15, -30), (60, 0, 0)])
def test_the_mean_face_turned_by_known_angles_gives_them_back(yaw, pitch, roll):
    t = np.array([0.6, -0.4, 7.0])
    points = project(FACE, line_of_sight(t) @ pose_rotation(yaw, pitch, roll), t, 640.0, np.array([319.5, 239.5]))
    fit = head_pose(points, (640, 480))
    assert [fit["yaw"], fit["pitch"], fit["roll"]] == pytest.approx([yaw, pitch, roll], abs=0.01)
    assert fit["error"] < 1e-4
    five = head_pose(FIVE_FROM_68 @ points, (640, 480))  # the 5 derived points alone
    assert [five["yaw"], five["pitch"], five["roll"]] == pytest.approx([yaw, pitch, roll], abs=0.5)


def test_yaw_within_10_degrees_on_other_faces_with_noise():
    """Faces that are not the mean face (each point's depth and place changed by up to 8 % of the eye
    distance) seen with 1 px of noise: yaw's sign always right and within 10 degrees."""
    rng = np.random.default_rng(0)
    errors = []
    for yaw in range(-60, 61, 10):
        for _ in range(5):
            face = FACE + rng.uniform(-0.08, 0.08, FACE.shape)
            t = np.array([rng.uniform(-1, 1), rng.uniform(-1, 1), 9.0])
            points = project(face, line_of_sight(t) @ pose_rotation(yaw, rng.uniform(-10, 10), rng.uniform(-10, 10)),
                             t, 800.0, np.array([399.5, 299.5])) + rng.normal(0, 1.0, (68, 2))
            fit = head_pose(points, (800, 600))
            errors.append(fit["yaw"] - yaw)
            assert yaw == 0 or np.sign(fit["yaw"]) == np.sign(yaw)
    assert np.abs(errors).max() < 10.0, np.abs(errors).max()


def test_real_faces_rotated_and_mirrored():
    """Roll follows an in-plane rotation of a real face within 2 degrees (yaw and pitch stay); a mirrored
    face reads the opposite yaw and roll."""
    flip = list(standard_scheme(68).flip)
    for points, (w, h) in real_faces(30):
        base = head_pose(points, (w, h))
        centre = np.array([w, h]) / 2 - 0.5
        for angle in (-30, -10, 15, 40):
            turned = moved(points - centre, similarity(1.0, angle, (0, 0))) + centre
            fit = head_pose(turned, (w, h))
            assert (fit["roll"] - base["roll"] - angle + 180) % 360 - 180 == pytest.approx(0, abs=2.0)
            assert fit["yaw"] == pytest.approx(base["yaw"], abs=2.0)
        mirrored = points[flip] * [-1, 1] + [w - 1, 0]
        fit = head_pose(mirrored, (w, h))
        assert fit["yaw"] == pytest.approx(-base["yaw"], abs=1.0) and fit["roll"] == pytest.approx(-base["roll"], abs=1.0)
        assert fit["pitch"] == pytest.approx(base["pitch"], abs=1.0)


def test_bad_faces_for_pose_are_one_line():
    for bad, fragment in ((np.zeros((7, 2)), "5 or 68 points"), (np.full((68, 2), 2.0), "degenerate shape"),
                          (np.full((5, 2), np.inf), "finite points"), (np.zeros(10), "points \\(N, 2\\)")):
        with pytest.raises(ValueError, match=fragment):
            head_pose(bad, (100, 100))


@pytest.fixture(scope="module")
def face_png(tmp_path_factory):
    from data_fixtures import face_image

    img, _ = face_image(3, size=240)
    path = tmp_path_factory.mktemp("f") / "face.png"
    Image.fromarray(img).save(path)
    return path


def test_predict_adds_aligned_crops_and_pose(face_png, tmp_path, capsys):
    from rcn_keras.landmarker import Landmarker

    model = Landmarker.from_preset("rcn-300w-fast")
    face = model.predict(face_png, detector="none", align=112, pose=True)[0]["faces"][0]
    assert face["aligned"].shape == (112, 112, 3) and face["aligned"].dtype == np.uint8
    assert set(face["pose"]) == {"yaw", "pitch", "roll", "error"}
    expected = align_face(face_png, face["keypoints"], 112)
    assert np.abs(face["aligned"].astype(int) - expected).mean() < 1.0  # as the stand-alone function
    with pytest.raises(ValueError, match="not known"):
        model.predict(face_png, detector="none", align="dlib")
    out = tmp_path / "pred"
    argv = ["predict", str(face_png), "--model", "rcn-300w-fast", "--detector", "none", "--out", str(out)]
    assert cli.main(argv + ["--align", "96", "--align-template", "mean68", "--pose"]) == 0
    doc = json.loads((out / "keypoints.json").read_text())
    listed = doc["images"][0]["faces"][0]
    assert listed["aligned"] == "face_face0_aligned.png" and set(listed["pose"]) == {"yaw", "pitch", "roll", "error"}
    assert Image.open(out / listed["aligned"]).size == (96, 96)
    assert open(out / "keypoints.csv").readline().strip().endswith("yaw,pitch,roll")
    assert cli.main(argv) == 0  # a run without --align: the earlier crop is not left unlisted
    assert not (out / "face_face0_aligned.png").exists()
    capsys.readouterr()
