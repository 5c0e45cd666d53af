"""The photos both photo benchmarks run on (validation faces pasted into 3-12 megapixel JPEGs) and the
whole-process timing of `rcn predict` against dlib's HOG + ERT script on a folder of them."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "300w"
SIZES = ((2048, 1536), (3000, 2000), (4000, 3000))
DLIB_SCRIPT = """
import sys, json, pathlib
import dlib, face_recognition_models, numpy as np
from PIL import Image, ImageOps
det = dlib.get_frontal_face_detector()
pred = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
out = {}
for p in sorted(pathlib.Path(sys.argv[1]).glob("*.jpg")):
    img = np.asarray(ImageOps.exif_transpose(Image.open(p)).convert("RGB"))
    out[str(p)] = [[[q.x, q.y] for q in pred(img, r).parts()] for r in det(img, 1)]
pathlib.Path(sys.argv[2]).write_text(json.dumps(out))
"""


def validation_faces(root: str) -> list[tuple[pathlib.Path, np.ndarray]]:
    """(image path, 68 points in edge coordinates) of the 300W validation split."""
    from rcn_keras.data.datasets import SUBSETS_300W, image_beside, load_300w
    from rcn_keras.data.formats import read_pts

    val = load_300w(root, ("afw", "helen_train"), 68, cache_dir="runs/cache").split(0.1)[1]
    return [(image_beside(pts), read_pts(pts, n_points=68) - 0.5)
            for name, group in zip(val.names, val.groups)
            for pts in [pathlib.Path(root) / SUBSETS_300W[group] / f"{name}.pts"]]


def make_photos(folder: pathlib.Path, count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``count`` JPEG photos in ``folder`` (sizes in turn), one validation face each; path -> its 68 points
    (0-based pixel centres)."""
    from PIL import Image

    faces = validation_faces(str(SHARED))
    rng = np.random.default_rng(seed)
    truth = {}
    for i in range(count):
        w, h = SIZES[i % len(SIZES)]
        path, pts = faces[i % len(faces)]
        face = Image.open(path).convert("RGB")
        side = int(rng.uniform(0.25, 0.45) * h * 1.6)  # the loose crop is about 1.6x the face
        k = side / max(face.size)
        face = face.resize((round(face.width * k), round(face.height * k)), Image.LANCZOS)
        canvas = rng.normal(120, 25, (h // 8, w // 8, 3)).clip(0, 255).astype(np.uint8)
        canvas = np.asarray(Image.fromarray(canvas).resize((w, h), Image.BICUBIC)).copy()
        x, y = int(rng.integers(0, w - face.width)), int(rng.integers(0, h - face.height))
        canvas[y:y + face.height, x:x + face.width] = np.asarray(face)
        noisy = np.clip(canvas.astype(np.int16) + rng.normal(0, 3, canvas.shape).astype(np.int16), 0, 255)
        name = folder / f"photo_{i:03d}_{w}x{h}.jpg"
        Image.fromarray(noisy.astype(np.uint8)).save(name, quality=92)
        truth[str(name)] = (pts + 0.5) * k + [x, y] - 0.5
    return truth


def nme(points, truth) -> float:
    from rcn_keras.evaluation.nme import per_sample_nme

    return 100 * float(per_sample_nme(np.asarray(points)[None] + 0.5, np.asarray(truth)[None] + 0.5,
                                      "corner_midpoints")[0])


def scored(found: dict[str, list], truth: dict[str, np.ndarray]) -> dict:
    """Faces found (a face whose points lie near the truth's) and their mean NME, from image -> faces' points."""
    errors = []
    for image, pts in truth.items():
        candidates = [nme(p, pts) for p in found.get(image, [])]
        if candidates and min(candidates) < 50:
            errors.append(min(candidates))
    return {"found %": 100 * len(errors) / len(truth), "NME %": float(np.mean(errors)) if errors else None}


def run_cli(args: list[str], before: pathlib.Path | None) -> float:
    """Wall seconds of one `rcn` command (of the ``before`` worktree when given)."""
    env = dict(os.environ)
    command = ["rcn", *args]
    if before is not None:
        env["PYTHONPATH"] = str(before)
        command = [sys.executable, "-m", "rcn_keras.app.cli.main", *args]
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return time.perf_counter() - start


def read_keypoints(path: pathlib.Path) -> dict[str, list]:
    doc = json.loads(path.read_text())
    return {i["image"]: [f["keypoints"] for f in i["faces"]] for i in doc["images"]}


def whole_process(folder: pathlib.Path, truth: dict, model: str, before: pathlib.Path | None, rounds: int = 2
                  ) -> list[dict]:
    """Best-of-``rounds`` wall seconds of each pipeline on ``folder``, interleaved, and its accuracy."""
    variants = {"rcn predict (after)": (None, []), "rcn predict --no-overlay (after)": (None, ["--no-overlay"])}
    if before is not None:
        variants.update({"rcn predict (before)": (before, []),
                         "rcn predict --no-overlay (before)": (before, ["--no-overlay"])})
    best: dict[str, float] = {}
    found: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for name, (rev, extra) in variants.items():
                out = pathlib.Path(tmp) / f"out_{r}_{len(best)}_{abs(hash(name))}"
                seconds = run_cli(["predict", str(folder), "--model", model, "--out", str(out), "--progress", "off",
                                   *extra], rev)
                best[name] = min(best.get(name, seconds), seconds)
                found[name] = read_keypoints(out / "keypoints.json")
            start = time.perf_counter()
            points = pathlib.Path(tmp) / "dlib.json"
            proc = subprocess.run([sys.executable, "-c", DLIB_SCRIPT, str(folder), str(points)],
                                  capture_output=True, text=True)
            if proc.returncode == 0:
                seconds = time.perf_counter() - start
                best["dlib HOG + ERT"] = min(best.get("dlib HOG + ERT", seconds), seconds)
                found["dlib HOG + ERT"] = json.loads(points.read_text())
    dlib_s = best.get("dlib HOG + ERT")
    return [{"pipeline": name, "seconds": s, "x dlib": s / dlib_s if dlib_s else None, **scored(found[name], truth)}
            for name, s in best.items()]
