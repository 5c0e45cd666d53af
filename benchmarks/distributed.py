"""Training steps/s of the custom distributed loop: 1 worker vs 2 local workers
(MultiWorkerMirroredStrategy over 127.0.0.1) at the same global batch, on this machine.

    python benchmarks/distributed.py [--steps 6] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

WORKER = """
import json, os, sys
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
from rcn_keras.app.training import preset_train_config, train
out, epochs, steps, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
cfg = preset_train_config("rcn_mtfl", epochs=epochs, batch_size=batch, steps_per_epoch=steps,
    output_dir=out, strategy="multiworker", visualize_every=1000,
    **{"data.synthetic_train": 256, "data.synthetic_validation": 16, "data.synthetic_test": 16})
s = train(cfg, verbose=0)
print(json.dumps({"train_seconds": s["history"]["train_seconds"]}))
"""


def run(workers: int, args, tmp: str) -> float:
    from rcn_keras.app.training.distributed import local_cluster

    procs = []
    out = os.path.join(tmp, f"w{workers}")
    try:
        for tf_config in local_cluster(workers):
            procs.append(subprocess.Popen([sys.executable, "-c", WORKER, out, str(args.epochs), str(args.steps),
                                           str(args.batch)], env={**os.environ, "TF_CONFIG": json.dumps(tf_config)},
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        outs = [p.communicate(timeout=1800) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outs):
        if p.returncode:
            raise RuntimeError(err[-2000:])
    seconds = json.loads(outs[0][0].strip().splitlines()[-1])["train_seconds"][1:]  # epoch 1 traces
    return args.steps * len(seconds) / sum(seconds)


def main() -> None:
    from _common import environment, print_table, write_results

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [{"workers": n, "global_batch": args.batch, "steps_per_s": run(n, args, tmp)} for n in (1, 2)]
    for r in rows:
        r["img_per_s"] = r["steps_per_s"] * args.batch
        r["speedup"] = r["steps_per_s"] / rows[0]["steps_per_s"]
    table = print_table(rows, ["workers", "global_batch", "steps_per_s", "img_per_s", "speedup"])
    print(f"wrote {write_results('distributed', {'env': environment(), 'args': vars(args), 'rows': rows, 'table': table})}")


if __name__ == "__main__":
    main()
