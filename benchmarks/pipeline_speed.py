"""Images/s of the training input pipeline alone (warp + jitter + occlusion to 80x80) next to the
training step rate of rcn_mtfl and rcn_300w, to show the pipeline does not limit training.

    python benchmarks/pipeline_speed.py [--faces 512] [--steps 20]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import rcn_keras  # noqa: E402
from _common import environment, print_table, write_results  # noqa: E402
from rcn_keras.data.faceset import FaceSet  # noqa: E402
from rcn_keras.data.pipeline import make_dataset  # noqa: E402
from rcn_keras.data.synthetic import synthetic_faces  # noqa: E402


def pipeline_rate(faces: FaceSet, batch: int, epochs: int) -> float:
    ds = make_dataset(faces, "train", batch_size=batch, seed=0)
    for _ in ds.take(2):  # warm up tracing
        pass
    n, start = 0, time.perf_counter()
    for _ in range(epochs):
        for x, _ in ds:
            n += int(x.shape[0])
    return n / (time.perf_counter() - start)


def train_rate(name: str, faces: FaceSet, batch: int, steps: int) -> float:
    model = rcn_keras.build_model(name)
    model.compile(keras.optimizers.Adadelta(1.0, rho=0.95, epsilon=1e-8), loss=rcn_keras.PixelNLL())
    ds = make_dataset(faces, "train", batch_size=batch, drop_remainder=True).repeat()
    model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)  # compile the step
    start = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    rows = []
    for k, model in ((5, "rcn_mtfl"), (68, "rcn_300w")):
        faces = synthetic_faces(args.faces, k, seed=0)
        pipe = pipeline_rate(faces, args.batch, epochs=3)
        step = train_rate(model, faces, args.batch, args.steps)
        rows.append({"model": model, "keypoints": k, "pipeline_img_s": pipe, "train_img_s": step,
                     "pipeline_over_train": pipe / step})
    table = print_table(rows, ["model", "keypoints", "pipeline_img_s", "train_img_s", "pipeline_over_train"])
    path = write_results("pipeline_speed", {"env": environment(), "args": vars(args), "rows": rows, "table": table})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
