"""NME normalisers and modes, border projection, failure rate / AUC / CED, report tables."""

import numpy as np
import pytest

from rcn_keras.data.synthetic import synthetic_faces
from rcn_keras.evaluation import nme as N
from rcn_keras.evaluation.report import REPORT_COLUMNS, evaluate_predictions, headline_nme
from rcn_keras.markdown import markdown_table


def test_normalisers_for_68_points():
    gt = np.zeros((1, 68, 2))
    gt[0, 36:42] = [0.2, 0.4]
    gt[0, 39] = [0.3, 0.4]
    gt[0, 36] = [0.1, 0.4]
    gt[0, 42:48] = [0.7, 0.4]
    gt[0, 42] = [0.6, 0.4]
    gt[0, 45] = [0.9, 0.4]
    assert N.inter_ocular(gt, "outer_corners")[0] == pytest.approx(0.8)
    assert N.inter_ocular(gt, "corner_midpoints")[0] == pytest.approx(0.75 - 0.2)
    assert N.inter_ocular(gt, "pupils")[0] == pytest.approx(np.mean([0.6, 0.7, 0.7, 0.9, 0.7, 0.7])
                                                           - np.mean([0.1, 0.2, 0.2, 0.3, 0.2, 0.2]))
    with pytest.raises(ValueError, match="allowed"):
        N.inter_ocular(gt, "eye_centres")


def test_per_sample_nme_continuous_paper_mask_and_subset():
    gt = np.array([[[0.25, 0.5], [0.75, 0.5], [0.5, 0.6], [0.3, 0.8], [0.7, 0.8]]])
    pred = gt.copy()
    pred[0, 2, 0] += 0.05  # 0.05 off on one point of five, IOD 0.5
    assert N.per_sample_nme(pred, gt)[0] == pytest.approx(0.05 / 5 / 0.5)
    mask = np.array([[1, 1, 0, 1, 1]])
    assert N.per_sample_nme(pred, gt, mask=mask)[0] == pytest.approx(0.0)
    # paper mode: both on the integer grid -> identical cells give zero error
    assert N.per_sample_nme(gt + 0.001, gt, mode="paper")[0] == 0.0
    assert N.per_sample_nme(pred, gt, points=[0, 1])[0] == 0.0


def test_failure_rate_auc_ced():
    e = np.array([0.01, 0.02, 0.09, 0.2])
    assert N.failure_rate(e, 0.08) == 0.5
    xs, ys = N.ced(e, 0.1)
    assert ys[-1] == 0.75 and ys[0] == 0.0
    assert 0 < N.auc(e, 0.08) < 0.5
    assert N.auc(np.zeros(5), 0.08) == pytest.approx(1.0, abs=1e-3)


def test_border_projection_snaps_then_clamps():
    pred = np.array([[[5.0, 30.0], [40.0, 40.0], [79.0, 2.0]]])
    codes = np.array([[1, 0, 0]])
    bp = np.array([[10, 4, 70, 80]])
    out = N.project_to_border(pred, codes, bp)
    np.testing.assert_allclose(out[0], [[10, 30], [40, 40], [70, 4]])
    clamp_only = N.project_to_border(pred, codes, bp, snap=False)
    assert clamp_only[0, 0, 0] == 10 and clamp_only[0, 0, 1] == 30


def test_evaluate_predictions_tables():
    faces = synthetic_faces(6, 68, seed=3)
    faces.groups = ["helen_test"] * 3 + ["ibug"] * 3
    gt = np.random.default_rng(0).uniform(0.2, 0.8, (6, 68, 2))
    res = evaluate_predictions(gt + 0.01, gt, faces)
    subsets = {r["subset"] for r in res["rows"]}
    assert {"helen_test", "ibug", "common", "challenging", "full", "all"} <= subsets
    assert {r["normaliser"] for r in res["rows"]} == {"corner_midpoints", "outer_corners", "pupils", "box"}
    assert {r["points"] for r in res["rows"]} == {"68 points", "49 points"}
    assert "| all |" in markdown_table(res["rows"], REPORT_COLUMNS)


def test_headline_nme_is_the_default_normaliser_over_all_faces_and_points():
    faces = synthetic_faces(6, 68, seed=3)
    faces.groups = ["helen_test"] * 3 + ["ibug"] * 3
    gt = np.random.default_rng(0).uniform(0.3, 0.7, (6, 68, 2))
    pred = gt + [0.01, 0.0]  # every point 0.01 to the right: NME = 0.01 / each face's eye distance
    expected = 100 * np.mean(0.01 / N.inter_ocular(gt, "corner_midpoints"))
    assert headline_nme(pred, gt, faces) == pytest.approx(expected, rel=1e-6)
    assert headline_nme(gt, gt, faces) == pytest.approx(0.0)


def _face68_truth(n: int = 4, seed: int = 0) -> np.ndarray:
    """(n, 68, 2) faces: the synthetic mean face, jittered, so that the jaw is a real curved contour."""
    faces = synthetic_faces(n, 68, seed=seed)
    return np.asarray(faces.keypoints - faces.rects[:, None, :2], np.float64) / faces.rects[:, None, 2:]


def test_region_errors_put_each_error_in_its_region_and_split_the_jaw_along_and_across():
    from rcn_keras.evaluation.regions import contour_tangents, region_errors
    from rcn_keras.keypoints import REGIONS_68

    gt = _face68_truth()
    d = N.inter_ocular(gt, "corner_midpoints")
    pred = gt.copy()
    pred[:, 48:68] += [0.0, 0.004]  # the mouth only, 0.004 down
    r = region_errors(pred, gt, "corner_midpoints")
    assert r["mouth"] == pytest.approx(100 * np.mean(0.004 / d))
    assert r["jaw"] == r["brows"] == r["nose"] == r["eyes"] == r["jaw along"] == r["jaw across"] == 0.0
    jaw = list(REGIONS_68["jaw"])
    tangent = contour_tangents(gt[:, jaw])
    normal = np.stack([-tangent[..., 1], tangent[..., 0]], -1)
    slid, pushed = gt.copy(), gt.copy()
    slid[:, jaw] += 0.005 * tangent  # every jaw point slides along the true contour
    pushed[:, jaw] += 0.003 * normal  # or is pushed off it
    along = region_errors(slid, gt, "corner_midpoints")
    assert along["jaw along"] == pytest.approx(100 * np.mean(0.005 / d)) and along["jaw across"] < 1e-9
    assert along["jaw"] == pytest.approx(along["jaw along"]) and along["mouth"] == 0.0
    across = region_errors(pushed, gt, "corner_midpoints")
    assert across["jaw across"] == pytest.approx(100 * np.mean(0.003 / d)) and across["jaw along"] < 1e-9
    with pytest.raises(ValueError, match="68 iBUG points"):
        region_errors(gt[:, :5], gt[:, :5])


def test_evaluation_reports_carry_the_regions_of_68_point_faces(tmp_path):
    import json

    from rcn_keras.evaluation.report import headline_regions, write_report

    faces = synthetic_faces(4, 68, seed=0)
    gt = _face68_truth()
    pred = gt.copy()
    pred[:, 36:48] += 0.002
    res = evaluate_predictions(pred, gt, faces)
    assert res["regions"] == headline_regions(pred, gt, faces)
    assert res["regions"]["eyes"] > 0.5 and res["regions"]["jaw"] < 1e-9 and res["regions"]["mouth"] < 1e-9
    assert "regions" not in evaluate_predictions(gt[:, :5], gt[:, :5], synthetic_faces(4, 5, seed=0))
    write_report(tmp_path, {"m": res})
    assert "NME % per face region" in (tmp_path / "report.md").read_text()
    saved = json.loads((tmp_path / "report.json").read_text())["regions"]["m"]
    assert saved["eyes"] == pytest.approx(res["regions"]["eyes"]) and "jaw along" in saved
