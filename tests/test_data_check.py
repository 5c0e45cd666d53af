"""`rcn data check` (rcn_keras.data.check): counts per subset against the published ones, and one line per
missing image, unreadable image or bad annotation, on files in the exact published formats and on the
real datasets where they are present."""

import json

import numpy as np
from PIL import Image

from data_fixtures import write_300w_folder, write_coco, write_keypoint_csv, write_mtfl
from rcn_keras.app.cli import main as cli
from rcn_keras.data.check import PUBLISHED_300W, check_dataset


def test_a_complete_small_mtfl_checks_out_and_flaws_are_one_line_each(tmp_path, capsys):
    write_mtfl(tmp_path, 6)
    write_mtfl(tmp_path, 3, "testing.txt")
    report = check_dataset("mtfl", tmp_path)
    rows = {r.subset: r for r in report.rows}
    assert report.ok and rows["training.txt"].usable == 6 and rows["testing.txt"].usable == 3
    assert rows["training.txt"].status == "partial (6 of 10,000)" and rows["  lfw_5590/"].listed == 6
    assert cli.main(["data", "check", "--data", "mtfl", "--root", str(tmp_path)]) == 0
    assert "layout ok; next: rcn train --preset rcn_mtfl_real" in capsys.readouterr().out
    (tmp_path / "lfw_5590" / "img_1.jpg").unlink()                     # missing image
    (tmp_path / "lfw_5590" / "img_2.jpg").write_text("not an image")   # unreadable image
    lines = (tmp_path / "training.txt").read_bytes().split(b"\r\n")
    fields = lines[3].split()
    fields[1] = b"nan"
    lines[3] = b" " + b" ".join(fields)                                # bad annotation (line 4)
    (tmp_path / "training.txt").write_bytes(b"\r\n".join(lines))
    report = check_dataset("mtfl", tmp_path)
    assert not report.ok and len(report.problems) == 3
    assert any("img_1.jpg: image file not found" in p for p in report.problems)
    assert any("img_2.jpg: not a readable image" in p for p in report.problems)
    assert any("training.txt:4" in p and "finite" in p for p in report.problems)
    assert {r.subset: r.usable for r in report.rows}["training.txt"] == 3
    assert cli.main(["data", "check", "--data", "mtfl", "--root", str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert out.count("problem: ") == 3 and "rcn: 3 problem(s)" in out


def test_a_partial_300w_is_said_not_an_error(tmp_path, capsys):
    write_300w_folder(tmp_path / "afw", 3)
    write_300w_folder(tmp_path / "helen" / "trainset", 2, seed=5)
    report = check_dataset("300w", tmp_path)
    status = {r.subset: r.status for r in report.rows}
    assert report.ok and status["afw"] == f"partial (3 of {PUBLISHED_300W['afw']})" and status["ibug"] == "absent"
    (tmp_path / "afw" / "face_0.jpg").unlink()
    assert cli.main(["data", "check", "--data", "300w", "--root", str(tmp_path)]) == 2
    assert "face_0.pts: no image beside it" in capsys.readouterr().out
    assert cli.main(["data", "check", "--data", "300w", "--root", str(tmp_path / "none")]) == 2
    assert "dataset folder not found" in capsys.readouterr().err


def test_own_keypoint_formats_are_checked(tmp_path):
    csv_path = write_keypoint_csv(tmp_path / "csv", 3, [36, 45, 30, 48, 54])
    assert check_dataset("csv", csv_path).ok
    (tmp_path / "csv" / "img" / "f2.png").unlink()
    assert check_dataset("csv", csv_path).problems == [
        f"{csv_path}:4: image img/f2.png not found (looked for {tmp_path / 'csv' / 'img' / 'f2.png'})"]
    coco = write_coco(tmp_path / "coco", 2, [36, 45, 30, 48, 54])
    doc = json.loads(coco.read_text())
    doc["annotations"][1]["keypoints"][0] = 1e9
    coco.write_text(json.dumps(doc))
    problems = check_dataset("coco", coco).problems
    assert len(problems) == 1 and "annotations[1]" in problems[0] and "far outside" in problems[0]
    write_300w_folder(tmp_path / "pts" / "a", 2)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "pts" / "a" / "face_1.jpg")
    problems = check_dataset("pts", tmp_path / "pts").problems
    assert len(problems) == 1 and "face_1.pts" in problems[0]


def test_the_real_datasets_check_out(shared_mtfl, shared_300w):
    mtfl = check_dataset("mtfl", shared_mtfl)
    assert mtfl.ok and {r.subset: r.status for r in mtfl.rows}["training.txt"] == "complete"
    assert {r.subset: r.usable for r in mtfl.rows} == {"training.txt": 10_000, "testing.txt": 2_995,
                                                       "  lfw_5590/": 4_151, "  net_7876/": 5_849, "  AFLW/": 2_995}
    w300 = check_dataset("300w", shared_300w)
    assert w300.ok and {r.subset: r.status for r in w300.rows}["afw"] == "complete"


def test_the_next_command_quotes_the_path_and_far_points_are_remarked(tmp_path, capsys):
    root = tmp_path / "my data"
    path = write_keypoint_csv(root, 3, [36, 45, 30, 48, 54])
    assert cli.main(["data", "check", "--data", "csv", "--root", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"--root '{path}'" in out and "remark" not in out
    lines = path.read_text().splitlines()
    fields = lines[2].split(",")
    fields[1] = "-60"  # x of point 0 of face 1: 30 % of the 200-pixel image outside it
    lines[2] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    report = check_dataset("csv", path)
    assert report.ok and len(report.remarks) == 1
    assert f"{path}:3: point 0 at (-60, " in report.remarks[0] and "30% of the image's size outside" in report.remarks[0]
    assert cli.main(["data", "check", "--data", "csv", "--root", str(path)]) == 0
    assert "remark: " in capsys.readouterr().out
