"""Make `rcn_keras/weights/mean_face.json`: the 68-point mean face in 2D (the alignment template) and in 3D
(head pose), both from the 300W training shapes the 68-point models learned from (AFW + HELEN train, the
validation split left out).

The 3D face is recovered by rigid factorisation (Tomasi and Kanade, 1992): under a scaled orthographic
camera the centred 2D shapes of many views of one face, stacked (2N x 68), have rank 3 = motion (2N x 3) x
structure (3 x 68); the affine ambiguity is removed by asking each view's two rows to be orthogonal and of
equal length. The 51 inner points (brows, nose, eyes, mouth) fix the motion; the jaw points, which slide
along the visible contour as the head turns, get their depth by least squares from that motion. The
result is made left-right symmetric, scaled to an outer-eye-corner distance of 1 and turned so that the
nose points to -z (towards the camera).

    python tools/mean_face.py --root ../shared/data/300w
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

from rcn_keras.pose import INNER  # the 51 inner points (brows, nose, eyes, mouth)

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "rcn_keras" / "weights" / "mean_face.json"


def factorise(shapes: np.ndarray) -> np.ndarray:
    """Structure (68, 3) of a rigid face from (N, 68, 2) views (NaN-free), up to a rotation and reflection."""
    centred = shapes - shapes[:, INNER].mean(axis=1, keepdims=True)
    w = np.concatenate([centred[:, :, 0], centred[:, :, 1]], axis=0)  # (2N, 68): all x rows, then all y rows
    u, s, vt = np.linalg.svd(w[:, INNER], full_matrices=False)
    motion = u[:, :3] * np.sqrt(s[:3])  # (2N, 3), affine
    n = len(shapes)
    mx, my = motion[:n], motion[n:]

    def rows(a, b):  # the 6 coefficients of a^T Q b for the symmetric Q (q11, q12, q13, q22, q23, q33)
        return np.stack([a[:, 0] * b[:, 0], a[:, 0] * b[:, 1] + a[:, 1] * b[:, 0], a[:, 0] * b[:, 2] + a[:, 2] * b[:, 0],
                         a[:, 1] * b[:, 1], a[:, 1] * b[:, 2] + a[:, 2] * b[:, 1], a[:, 2] * b[:, 2]], axis=1)

    # metric constraints: |mx|^2 - |my|^2 = 0, mx . my = 0, and the mean of |mx|^2 = 1 (the scale)
    lhs = np.concatenate([rows(mx, mx) - rows(my, my), rows(mx, my), rows(mx, mx).mean(0, keepdims=True)])
    rhs = np.concatenate([np.zeros(2 * n), [1.0]])
    q = np.linalg.lstsq(lhs, rhs, rcond=None)[0]
    big_q = np.array([[q[0], q[1], q[2]], [q[1], q[3], q[4]], [q[2], q[4], q[5]]])
    vals, vecs = np.linalg.eigh(big_q)
    correction = vecs * np.sqrt(np.clip(vals, 1e-9, None))  # Q = C C^T
    motion = motion @ correction
    structure = np.linalg.lstsq(motion, w, rcond=None)[0]  # (3, 68): every point, jaw included
    return structure.T


def normalise(face: np.ndarray, mean2d: np.ndarray, flip: list[int]) -> np.ndarray:
    """``face`` turned to the average view of the training faces (its projection fitted to the 2D mean
    shape ``mean2d``: x right, y down), the nose tip towards -z, made symmetric (mirrored onto the flipped
    points), scaled to outer eye corners 1 apart and centred at the inner points' mean."""
    from rcn_keras.pose import orthographic_fit

    face = face - face[INNER].mean(0)
    rotation = orthographic_fit(face[INNER], mean2d[INNER])[0]  # the average view
    face = face @ rotation.T
    if face[30, 2] > face[INNER, 2].mean():  # the nose tip must be nearest the camera (smallest z)
        face[:, 2] *= -1  # the reflection factorisation cannot tell apart
    mirrored = face[flip] * [-1, 1, 1]
    face = (face + mirrored) / 2
    return face / (face[45, 0] - face[36, 0])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default=str(ROOT.parent / "shared" / "data" / "300w"))
    args = p.parse_args(argv)
    from rcn_keras.app.training.fit import training_shapes
    from rcn_keras.data.sources import DataConfig, load_splits
    from rcn_keras.files import atomic_write_text
    from rcn_keras.keypoints import standard_scheme
    from rcn_keras.models.shape_prior import procrustes_pca

    train = load_splits(DataConfig(source="300w", root=args.root, test_subsets=()), 68).train
    shapes = training_shapes(train).astype(np.float64)
    shapes = shapes[~np.isnan(shapes).any(axis=(1, 2))]
    flip = list(standard_scheme(68).flip)
    mean2d = procrustes_pca(shapes, 1)[0]  # the Procrustes mean shape
    face3d = normalise(factorise(shapes), mean2d, flip)
    mean2d = (mean2d + mean2d[flip] * [-1, 1] + [mean2d[:, 0].mean() * 2, 0]) / 2  # symmetric about its middle
    lo, hi = mean2d.min(0), mean2d.max(0)
    mean2d = (mean2d - lo) / (hi - lo).max()  # the landmark box's longer side = 1, top-left at 0
    doc = {"points": 68, "faces": len(shapes),
           "source": "the 300W training shapes (AFW + HELEN train, validation split left out): "
                     "python tools/mean_face.py",
           "terms": "derived from the 300-W annotations: research use only, as the 68-point models",
           "mean_2d": "Procrustes mean shape, x right, y down, its landmark box's longer side 1, top-left at 0",
           "mean_3d": "rigid factorisation (Tomasi-Kanade) of the same shapes; x to the image right, y down, "
                      "z away from the camera (nose tip at the smallest z); outer eye corners 1 apart",
           "points_2d": np.round(mean2d, 5).tolist(), "points_3d": np.round(face3d, 5).tolist()}
    atomic_write_text(OUT, json.dumps(doc, indent=1) + "\n")
    depth = face3d[:, 2]
    print(f"{len(shapes)} shapes -> {OUT.relative_to(ROOT)}; nose tip depth {depth[30] - depth[[36, 45]].mean():+.3f}, "
          f"chin {depth[8] - depth[[36, 45]].mean():+.3f}, mouth corners {depth[[48, 54]].mean() - depth[[36, 45]].mean():+.3f} "
          "(eye-corner distances, from the outer eye corners)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
