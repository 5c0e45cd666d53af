"""Evaluate a model on a `FaceSet` and report NME per subset and normaliser: Markdown, JSON, CED plot."""

from __future__ import annotations

import json
import os
import pathlib

import keras
import numpy as np

from rcn_keras.data.crop import border_pixels
from rcn_keras.data.faceset import FaceSet
from rcn_keras.files import atomic_write_bytes
from rcn_keras.data.pipeline import make_dataset
from rcn_keras.evaluation import nme as N
from rcn_keras.evaluation.regions import region_errors
from rcn_keras.keypoints import FACE_68, POINTS_49, KeypointScheme, as_scheme, is_annotated, standard_scheme
from rcn_keras.markdown import markdown_table
from rcn_keras.models.head import KeypointReadout, as_map_model, input_side, mirrored_readout

THRESHOLDS = (0.08, 0.10)
# 300W composite groups (docs/model.md 7.3) built from the per-folder groups when present.
COMPOSITES = {"common": ("helen_test", "lfpw_test"), "challenging": ("ibug",),
              "full": ("helen_test", "lfpw_test", "ibug")}


def predict_faceset(model: keras.Model, faces: FaceSet, batch_size: int = 64, readout: str | None = None,
                    flip: bool = False, shape_prior: bool = True):
    """Un-jittered test crops of ``faces`` through a `Landmarker` or map model: (pred, gt) normalised
    (N, K, 2) and confidence. ``readout``: the model's own (a `Landmarker`'s) unless given, else arg-max.
    ``flip``: flip test-time averaging with the model's keypoint scheme (the paper's for a map model).
    ``shape_prior``: fit the model's `ShapePrior` when it has one (False: the read-out alone). A
    `Landmarker`'s `LabelOffsets` move its points as in `Landmarker.predict_crops`."""
    preds, gts, confs = [], [], []
    head = KeypointReadout(readout or getattr(model, "readout", None) or "argmax")
    maps_model = as_map_model(model)
    perm = None
    if flip:
        perm = (model.mirror_permutation(True) if hasattr(model, "mirror_permutation")
                else standard_scheme(faces.num_keypoints).flip)
    prior = getattr(model, "shape_prior", None) if shape_prior else None
    for x, y in make_dataset(faces, "test", batch_size=batch_size, out_size=input_side(maps_model)):
        out = mirrored_readout(maps_model, head, x, perm, prior, getattr(model, "label_offsets", None))
        preds.append(out["keypoints"].numpy())
        confs.append(out["confidence"].numpy())
        gts.append(y.numpy()[..., :2])
    return np.concatenate(preds), np.concatenate(gts), np.concatenate(confs)


def headline_rows(rows: list[dict]) -> list[dict]:
    """The rows of `evaluate_predictions` for the whole set and all keypoints (one per normaliser;
    no per-subset or 49-point rows), the default normaliser first."""
    return [r for r in rows if r["subset"] == "all" and r["points"] in ("all points", "68 points")]


def headline_nme(pred: np.ndarray, gt: np.ndarray, faces: FaceSet) -> float:
    """NME (%) of ``pred`` on ``faces`` by the default normaliser, all keypoints: the one number a
    benchmark row or a validation check quotes."""
    return headline_rows(evaluate_predictions(pred, gt, faces)["rows"])[0]["nme"]


def headline_regions(pred: np.ndarray, gt: np.ndarray, faces: FaceSet) -> dict[str, float]:
    """NME (%) per face region of 68-point ``pred`` on ``faces`` by the default normaliser (`regions`)."""
    return evaluate_predictions(pred, gt, faces)["regions"]


def summarize(errors: np.ndarray) -> dict:
    """Mean / median NME (%), failure rates and AUC at 8 % and 10 %."""
    e = np.asarray(errors)
    out = {"faces": int(len(e)), "nme": float(100 * e.mean()), "median": float(100 * np.median(e))}
    for t in THRESHOLDS:
        tag = f"{int(round(t * 100))}"
        out[f"fr{tag}"] = float(100 * N.failure_rate(e, t))
        out[f"auc{tag}"] = float(N.auc(e, t))
    return out


def evaluate_predictions(pred: np.ndarray, gt: np.ndarray, faces: FaceSet, mode: str = "continuous",
                         border_projection: bool = True, scheme: KeypointScheme | None = None) -> dict:
    """Per-sample errors and summaries for every normaliser of the keypoint ``scheme`` (default: the
    `standard_scheme` of K), every subset and (68 points) the 49-point variant. Points that are not
    annotated on their own (`keypoints.is_annotated`) are left out of the means.

    For the 68-point scheme the predictions are first projected to the image border as docs/model.md 5.4,
    and ``"regions"`` gives the NME per face region over all faces by the default normaliser
    (`regions.region_errors`).
    """
    k = gt.shape[1]
    scheme = as_scheme(scheme, k)
    face68 = scheme == FACE_68
    if face68 and border_projection:
        bp = np.stack([border_pixels(p) for p in faces.pads])
        pred = N.project_to_border(pred * N.MAP_SIZE, faces.border_codes, bp) / N.MAP_SIZE
    annotated = is_annotated(faces.border_codes)
    mask = None if annotated.all() else annotated.astype(np.float64)
    groups = np.asarray(faces.groups)
    subsets = {g: groups == g for g in dict.fromkeys(faces.groups)}
    for name, members in COMPOSITES.items():
        sel = np.isin(groups, members)
        if sel.any() and len(subsets) > 1 and name not in subsets:
            subsets[name] = sel
    subsets["all"] = np.ones(len(groups), bool)
    variants = {"68 points": None, "49 points": POINTS_49} if face68 else {"all points": None}
    rows, errors = [], {}
    for norm in scheme.normaliser_names:
        for variant, points in variants.items():
            e = N.per_sample_nme(pred, gt, norm, mask=mask, mode=mode, points=points, scheme=scheme)
            errors[f"{norm}/{variant}"] = e
            for subset, sel in subsets.items():
                rows.append({"subset": subset, "normaliser": norm, "points": variant, **summarize(e[sel])})
    out = {"rows": rows, "errors": errors, "mode": mode, "pred": pred}
    if face68 and mode == "continuous":
        out["regions"] = region_errors(pred, gt, scheme.default_normaliser, mask, scheme)
    return out


REPORT_COLUMNS = [("subset", "subset", ""), ("normaliser", "normaliser", ""), ("points", "points", ""),
                  ("faces", "faces", ""), ("nme", "NME %", ".2f"), ("median", "median %", ".2f"),
                  ("fr8", "FR@8 %", ".2f"), ("fr10", "FR@10 %", ".2f"), ("auc8", "AUC@8", ".3f"),
                  ("auc10", "AUC@10", ".3f")]


def region_table(regions: dict[str, float], title: str | None = None) -> str:
    """One Markdown row of `region_errors` (jaw first, then its along / across split)."""
    columns = [(k, k, ".2f") for k in regions]
    return markdown_table([regions], columns, title)


def write_report(out_dir: str | os.PathLike, results: dict[str, dict], extra: dict | None = None) -> dict:
    """Write report.md, report.json and ced.png for ``results`` (name -> `evaluate_predictions` output)."""
    from rcn_keras.visualize import ced_figure, figure_to_png

    out_dir = pathlib.Path(out_dir)
    md = [f"# Evaluation ({next(iter(results.values()))['mode']} mode)", ""]
    payload = {"results": {}, **(extra or {})}
    curves = {}
    for name, res in results.items():
        md += [markdown_table(res["rows"], REPORT_COLUMNS, name), ""]
        payload["results"][name] = res["rows"]
        if res.get("regions"):
            md += [region_table(res["regions"], f"{name}: NME % per face region, all faces, "
                                                f"{res['rows'][0]['normaliser']}"), ""]
            payload.setdefault("regions", {})[name] = res["regions"]
        first_key = next(iter(res["errors"]))
        curves[name] = N.ced(res["errors"][first_key], 0.10)
    atomic_write_bytes(out_dir / "report.md", "\n".join(md).encode())
    atomic_write_bytes(out_dir / "report.json", json.dumps(payload, indent=2).encode())
    figure_to_png(ced_figure(curves, 0.10), out_dir / "ced.png")
    return payload
