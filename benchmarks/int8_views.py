"""What the int8 files gain from quantising by node: each model's int8 TFLite file as `rcn_keras.export` writes
it (ops that only move values, such as the upsampling's reshapes and tiles, follow their input: int8 between
quantised convolutions, float in the read-out and shape prior) beside the file of before 2026-12-07 (those
ops kept float by their type, so each upsampling was dequantised and quantised again), and the float32
file; scored on the 300W validation split and timed at batch 1 on one thread, the files taking turns.
Writes results/int8_views.*.

    python benchmarks/int8_views.py rcn-300w-fast rcn-300w
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
from unittest import mock

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import data_missing, environment, write_report  # noqa: E402

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "300w"
# The ops the int8 files of before kept float by type, beside rcn_keras.export.FLOAT_OPS.
VIEW_OPS_BEFORE = ("RESHAPE", "PACK", "STRIDED_SLICE", "TRANSPOSE")
FILES = ("float32", "int8 by op type (before)", "int8 by node")
COLUMNS = ["model", "file", "NME %", "ms per face", "x float32", "quantise + dequantise ops"]
INTRO = ("300W validation, {faces} faces, NME % by the eye-corner midpoints; ms per face at batch 1 on one thread (the "
         "first validation face), median of blocks of 20 calls, {reps} calls each, the files taking turns (`python "
         "benchmarks/int8_views.py`). `by op type (before)`: reshapes, slices and transposes kept float wherever they "
         "are; `by node`: they follow their input (`rcn_keras.export`).")


def write_files(model, representative, folder: pathlib.Path) -> dict:
    """FILES -> the TFLite file of ``model`` in that form, under ``folder``."""
    import rcn_keras.export as export

    paths = {name: folder / f"{i}.tflite" for i, name in enumerate(FILES)}
    model.export(paths["float32"], "tflite")
    with mock.patch.object(export, "FLOAT_OPS", export.FLOAT_OPS + VIEW_OPS_BEFORE), \
            mock.patch.object(export, "_float_nodes", lambda calibrated: []):
        model.export(paths[FILES[1]], "tflite", quantize="int8", representative=representative)
    model.export(paths[FILES[2]], "tflite", quantize="int8", representative=representative)
    return paths


def conversions(path: pathlib.Path) -> int:
    """QUANTIZE and DEQUANTIZE ops in a TFLite file."""
    from rcn_keras.runtimes import tflite_interpreter

    ops = tflite_interpreter(str(path), threads=1)._get_ops_details()
    return sum(op["op_name"] in ("QUANTIZE", "DEQUANTIZE") for op in ops)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("models", nargs="*", default=["rcn-300w-fast", "rcn-300w"],
                   help="shipped model names or .keras files (68 points)")
    p.add_argument("--reps", type=int, default=500, help="timed calls per file")
    p.add_argument("--root", default=str(SHARED))
    args = p.parse_args(argv)
    if data_missing(args.root):
        return 0
    import numpy as np
    from shape_prior_cost import timed
    from speed_vs_dlib import _faces, _normalised

    from rcn_keras.evaluation.report import headline_nme
    from rcn_keras.landmarker import load_landmarker
    from rcn_keras.runtimes import ExportedLandmarker

    rows, files, faces = [], {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, spec in enumerate(args.models):
            model = load_landmarker(spec)
            representative, val, crops = _faces(args.root, model.num_keypoints, model.input_size)
            folder = pathlib.Path(tmp) / str(i)
            folder.mkdir()
            for name, path in write_files(model, representative, folder).items():
                run = ExportedLandmarker(path, threads=1)
                pred = np.concatenate([run(crops[j:j + 1])["keypoints"] for j in range(len(crops))])
                files[(spec, name)] = path
                faces[(spec, name)] = crops[:1]  # a real face: flat maps of noise time differently
                rows.append({"model": spec, "file": name, "NME %": headline_nme(pred, _normalised(val), val),
                             "quantise + dequantise ops": conversions(path)})
                print(f"{spec} {name}: {rows[-1]['NME %']:.3f} %", flush=True)
        ms = timed(files, args.reps, faces)
    for row in rows:
        row["ms per face"] = ms[(row["model"], row["file"])]
        row["x float32"] = row["ms per face"] / ms[(row["model"], "float32")]
    print(f"300W validation, {len(val)} faces; batch 1, one thread, {args.reps} calls each, interleaved")
    write_report("int8_views", "int8 files: quantised by node against by op type",
                 INTRO.format(faces=len(val), reps=args.reps), rows, COLUMNS,
                 {"rows": rows, "reps": args.reps, "environment": environment()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
