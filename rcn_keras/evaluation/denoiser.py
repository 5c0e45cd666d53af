"""Denoiser alone on held-out shapes: NME of the corrupted points before (their random positions) and
after denoising, for several numbers of corrupted keypoints (docs/model.md, 8)."""

from __future__ import annotations

import keras
import numpy as np

from rcn_keras.data.faceset import FaceSet
from rcn_keras.data.pipeline import make_denoiser_dataset
from rcn_keras.evaluation.nme import inter_ocular
from rcn_keras.grid import argmax_points
from rcn_keras.markdown import markdown_table
from rcn_keras.models.head import KeypointReadout

CORRUPTIONS = (5, 10, 20, 35, 50)


def evaluate_denoiser(model: keras.Model, faces: FaceSet, corruptions=CORRUPTIONS, batch_size: int = 64,
                      seed: int = 0) -> list[dict]:
    """For each count k: mean over faces of (mean corrupted-point error / inter-ocular distance), in %,
    for the noisy input ("before") and the denoiser's arg-max ("after"); plus all-point NME after."""
    head = KeypointReadout("argmax")
    rows = []
    for k in corruptions:
        if k > faces.num_keypoints:
            continue
        before, after, after_all = [], [], []
        for maps, y in make_denoiser_dataset(faces, "test", batch_size, n_corrupt=k, seed=seed + k):
            y = y.numpy()
            gt, mask = y[..., :2], y[..., 2]
            noisy = np.asarray(argmax_points(maps))  # the corrupted input's pixels
            pred = head(model(maps, training=False))["keypoints"].numpy()
            iod = inter_ocular(gt)
            for name, p, acc in (("before", noisy, before), ("after", pred, after)):
                err = np.linalg.norm(p - gt, axis=-1)
                acc.extend((err * mask).sum(-1) / np.maximum(mask.sum(-1), 1e-12) / iod)
            after_all.extend(np.linalg.norm(pred - gt, axis=-1).mean(-1) / iod)
        rows.append({"corrupted": k, "faces": len(before), "before": float(100 * np.mean(before)),
                     "after": float(100 * np.mean(after)), "after_all_points": float(100 * np.mean(after_all))})
    return rows


DENOISER_COLUMNS = [("corrupted", "corrupted points", ""), ("faces", "faces", ""),
                    ("before", "NME corrupted, before %", ".2f"), ("after", "NME corrupted, after %", ".2f"),
                    ("after_all_points", "NME all points, after %", ".2f")]


def denoiser_table(rows: list[dict]) -> str:
    return markdown_table(rows, DENOISER_COLUMNS) + "\n"
