"""Second stages on top of a 68-point model, on the validation faces (the jaw-gap work, issue 47): does a
second look at the face place the points, the jaw's above all, better than the model alone?

* **second pass**: the model again on a crop made from its own points (the landmark box x 1.3 of them),
  rotated so that its eyes are level, and the mean of both passes;
* **linear refinement**: a ridge regression of each training face's residual (label - prediction) on the
  predicted shape, or on the finest feature maps sampled at the predicted points (shape-indexed features,
  as an ERT's), fitted on the training faces (un-jittered and ``--copies`` detector-like jittered copies),
  its strength chosen by 5-fold cross-validation on them;
* **test-time augmentation**: flip averaging, and its mean over the face's square and four copies moved by 3 %
  of its side;
* **dlib's ERT trained on the same faces** (``--ert``, the ``peers`` extra): dlib's shape predictor
  trainer on the same training crops and boxes, alone and with its jaw mixed into the model's.

Each row: NME on the validation split from the landmark box and from detector-like boxes, and the error per
face region. Writes results/NAME.{md,json} (default second_stage).

    python benchmarks/second_stage.py rcn-300w-hr --ert
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import RESULTS, data_missing, environment, print_table, write_results  # noqa: E402
from real_faces import jittered  # noqa: E402

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "300w"
LAMBDAS = (1e2, 1e3, 3e3, 1e4, 3e4, 1e5)
FEATURE_LAYER = "f3"  # the last convolution before the output maps, at the maps' 80x80
JAW = slice(0, 17)
ERT_JAW_WEIGHT = 0.3
SHIFT = 0.03  # of the face square's side, for the shifted-crop test-time augmentation


def warp_crops(images: np.ndarray, rects: np.ndarray, angles: np.ndarray, side: int) -> np.ndarray:
    """(N, side, side, 1) crops of the loose crops ``images``: each square ``rect`` rotated by its angle
    (degrees), with the training pipeline's warp (`rcn_keras.data.augment`)."""
    from rcn_keras.data import augment

    out = []
    for image, rect, angle in zip(images, rects, angles):
        tl, k, c, sn = augment.warp_params(rect.astype(np.float32), 1.0, 0.0, 0.0, float(angle), side)
        out.append(augment.warp_image(image, tl, k, c, sn, side).numpy())
    return np.stack(out)


def pass_on(model, faces, new: np.ndarray, angles: np.ndarray, flip: bool = False) -> np.ndarray:
    """The model's points on crops of the squares ``new`` rotated by ``angles``, normalised to ``faces.rects``."""
    from rcn_keras.inference import crop_to_image

    rects = faces.rects.astype(np.float64)
    found = model.predict_crops(warp_crops(faces.images, new, angles, model.input_size), flip=flip)["keypoints"]
    edges = np.array([crop_to_image(f, r, a) + 0.5 for f, r, a in zip(found, new, angles)])  # pixel centres -> edges
    return (edges - rects[:, None, :2]) / rects[:, None, 2:]


def second_pass(model, faces, first: np.ndarray) -> np.ndarray:
    """The model on crops made from its own points ``first`` (normalised to ``faces.rects``), eyes level."""
    from rcn_keras.data.crop import stage_b_rect
    from rcn_keras.inference import roll_degrees

    rects = faces.rects.astype(np.float64)
    points = rects[:, None, :2] + first * rects[:, None, 2:]
    new = np.array([stage_b_rect(p) for p in points], np.float64)
    angles = np.array([roll_degrees([p[36:42].mean(0), p[42:48].mean(0)]) for p in points])
    return pass_on(model, faces, new, angles)


def shifted_crops(model, faces, centre: np.ndarray, shift: float = SHIFT) -> np.ndarray:
    """Test-time augmentation: the mean of the flip-averaged points on the face's own square (``centre``) and
    on four copies of it moved by ``shift`` of its side left, right, up and down (8 more network passes)."""
    rects = faces.rects.astype(np.float64)
    passes = [centre]
    for dx, dy in ((-shift, 0), (shift, 0), (0, -shift), (0, shift)):
        new = rects.copy()
        new[:, 0] += dx * rects[:, 2]
        new[:, 1] += dy * rects[:, 2]
        passes.append(pass_on(model, faces, new, np.zeros(len(rects)), flip=True))
    return np.mean(passes, axis=0)


def features(model, faces) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Predictions, labels (both normalised) and the ridge's features of ``faces``: the predicted shape
    about its centre, and the feature maps of `FEATURE_LAYER` sampled at the predicted points."""
    import keras

    from rcn_keras.data.pipeline import make_dataset

    backbone = model.backbone
    layer = keras.Model(backbone.input, backbone.get_layer(FEATURE_LAYER).output)
    preds, labels, sampled = [], [], []
    for x, y in make_dataset(faces, "test", batch_size=64, out_size=model.input_size):
        p = model.predict_crops(x.numpy())["keypoints"]
        maps = layer(x, training=False).numpy()
        h = maps.shape[1]
        ij = np.clip((p * h).astype(int), 0, h - 1)
        sampled.append(np.stack([m[i[:, 1], i[:, 0]] for m, i in zip(maps, ij)]).reshape(len(p), -1))
        preds.append(p)
        labels.append(y.numpy()[..., :2])
    preds = np.concatenate(preds)
    shape = (preds - preds.mean(axis=1, keepdims=True)).reshape(len(preds), -1)
    return preds, np.concatenate(labels), {"shape": shape, "maps": np.concatenate(sampled)}


def ridge(z: np.ndarray, r: np.ndarray, lam: float) -> np.ndarray:
    """Ridge weights of targets ``r`` on standardised features ``z`` (primal or dual, the smaller)."""
    if z.shape[1] <= len(z):
        return np.linalg.solve(z.T @ z + lam * np.eye(z.shape[1]), z.T @ r)
    return z.T @ np.linalg.solve(z @ z.T + lam * np.eye(len(z)), r)


def fit_refinement(x: np.ndarray, residual: np.ndarray, groups: np.ndarray):
    """(predict, lambda): a ridge from features ``x`` to ``residual`` with its strength picked by 5-fold
    cross-validation over the faces (``groups``: a face's copies share a fold)."""
    mu, sd = x.mean(0), x.std(0) + 1e-6
    z = (x - mu) / sd
    folds = groups % 5
    cv = {}
    for lam in LAMBDAS:
        errors = []
        for f in range(5):
            train, held = folds != f, folds == f
            bias = residual[train].mean(0)
            w = ridge(z[train], residual[train] - bias, lam)
            diff = (z[held] @ w + bias - residual[held]).reshape(-1, 2)
            errors.append(np.hypot(diff[:, 0], diff[:, 1]).mean())
        cv[lam] = float(np.mean(errors))
    lam = min(cv, key=cv.get)
    bias = residual.mean(0)
    w = ridge(z, residual - bias, lam)
    return (lambda f: ((f - mu) / sd) @ w + bias), lam


def train_ert(faces):
    """dlib's shape predictor trained on ``faces``' loose crops and crop squares (its default options)."""
    import dlib

    options = dlib.shape_predictor_training_options()
    options.num_threads = os.cpu_count() or 1
    images, objects = [], []
    for image, points, rect in zip(faces.images, faces.keypoints, faces.rects):
        images.append(np.ascontiguousarray(image))
        parts = [dlib.point(int(round(x - 0.5)), int(round(y - 0.5))) for x, y in points]
        objects.append([dlib.full_object_detection(_dlib_rect(rect), parts)])
    return dlib.train_shape_predictor(images, objects, options)


def _dlib_rect(rect):
    import dlib

    x, y, s = (float(v) for v in rect)
    return dlib.rectangle(round(x), round(y), round(x + s), round(y + s))


def ert_points(predictor, faces) -> np.ndarray:
    out = []
    for image, rect in zip(faces.images, faces.rects):
        shape = predictor(np.ascontiguousarray(image), _dlib_rect(rect))
        points = np.array([[p.x + 0.5, p.y + 0.5] for p in shape.parts()])
        out.append((points - rect[:2]) / rect[2])
    return np.array(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", nargs="?", default="rcn-300w-hr", help="a shipped 68-point model or a .keras file")
    p.add_argument("--root", default=str(SHARED))
    p.add_argument("--copies", type=int, default=3, help="detector-like jittered copies of each training face")
    p.add_argument("--ert", action="store_true", help="also train dlib's ERT on the same faces (peers extra)")
    p.add_argument("--results", default="second_stage", metavar="NAME")
    args = p.parse_args(argv)
    if data_missing(args.root):
        return 0
    if args.ert:
        from rcn_keras.extras import require

        require("dlib", "--ert", "dlib-bin", "peers")
    from rcn_keras.data.crop import crop_side
    from rcn_keras.data.sources import DataConfig, load_splits
    from rcn_keras.evaluation.report import headline_nme, headline_regions
    from rcn_keras.landmarker import load_landmarker

    model = load_landmarker(args.model)
    splits = load_splits(DataConfig(source="300w", root=args.root), 68, crop_size=crop_side(model.input_size))
    sets = {"landmark box": splits.validation, "detector-like box": jittered(splits.validation)}
    found = {name: features(model, faces) for name, faces in sets.items()}
    readings: dict[str, dict[str, np.ndarray]] = {"the model alone": {n: f[0] for n, f in found.items()}}
    second = {n: second_pass(model, sets[n], found[n][0]) for n in sets}
    readings["second pass, levelled, from its own points"] = second
    readings["mean of both passes"] = {n: (found[n][0] + second[n]) / 2 for n in sets}
    rects = {n: sets[n].rects.astype(np.float64) for n in sets}
    flipped = {n: pass_on(model, sets[n], rects[n], np.zeros(len(rects[n])), flip=True) for n in sets}
    readings["flip-averaged"] = flipped
    readings[f"flip-averaged on the square and 4 copies moved by {SHIFT:g} of its side"] = {
        n: shifted_crops(model, sets[n], flipped[n]) for n in sets}

    train = [features(model, splits.train)] + [features(model, jittered(splits.train, seed=s))
                                               for s in range(1, args.copies + 1)]
    pred = np.concatenate([t[0] for t in train])
    residual = (np.concatenate([t[1] for t in train]) - pred).reshape(len(pred), -1)
    groups = np.tile(np.arange(len(splits.train)), args.copies + 1)
    chosen = {}
    for kind, label in (("shape", "ridge from the predicted shape"),
                        ("maps", f"ridge from `{FEATURE_LAYER}` sampled at the predicted points")):
        refine, chosen[kind] = fit_refinement(np.concatenate([t[2][kind] for t in train]), residual, groups)
        readings[f"{label} (lambda {chosen[kind]:g})"] = {
            n: found[n][0] + refine(found[n][2][kind]).reshape(found[n][0].shape) for n in sets}
    ert_seconds = None
    if args.ert:
        start = time.perf_counter()
        predictor = train_ert(splits.train)
        ert_seconds = time.perf_counter() - start
        ert = {n: ert_points(predictor, sets[n]) for n in sets}
        readings["dlib's ERT trained on the same faces"] = ert
        mixed = {}
        for n in sets:
            mixed[n] = found[n][0].copy()
            mixed[n][:, JAW] = (1 - ERT_JAW_WEIGHT) * found[n][0][:, JAW] + ERT_JAW_WEIGHT * ert[n][:, JAW]
        readings[f"the model, its jaw mixed with the ERT's ({ERT_JAW_WEIGHT:g})"] = mixed

    rows = []
    for name, points in readings.items():
        row = {"reading": name}
        for n, faces in sets.items():
            row[n] = headline_nme(points[n], found[n][1], faces)
        rows.append({**row, **headline_regions(points["landmark box"], found["landmark box"][1], sets["landmark box"])})
    columns = ["reading", *sets, "jaw", "jaw along", "jaw across", "brows", "nose", "eyes", "mouth"]
    title = (f"{args.model} on the 300W validation split ({len(splits.validation)} faces), NME % by the eye-corner "
             f"midpoints; per region from the landmark box")
    print(title)
    table = print_table(rows, columns)
    from rcn_keras.files import atomic_write_text

    command = " ".join(["python benchmarks/second_stage.py", *(argv if argv is not None else sys.argv[1:])])
    atomic_write_text(RESULTS / f"{args.results}.md", f"# Second stages on top of a 68-point model\n\n{title} "
                      f"(`{command}`; the refinements fitted on the {len(splits.train)} training faces and "
                      f"{args.copies} jittered copies of each).\n\n{table}\n")
    payload = {"model": args.model, "rows": rows, "lambdas": chosen, "ert_train_seconds": ert_seconds,
               "environment": environment()}
    print(f"wrote {write_results(args.results, payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
