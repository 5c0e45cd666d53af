"""Where the time of `rcn predict clip.mp4` goes, and its frames per second beside dlib's HOG + ERT loop on
the same frames: a 1280x720, 30 fps clip of one moving face (the public-domain astronaut photo, scaled and
swayed on a grey background), whole process (start-up included) with and without the overlay video, and
the stages timed alone in one process (decode, detect + landmarks, draw, encode). Writes
results/video_speed.{json,md}.

    python benchmarks/video_speed.py [--seconds 5] [--model rcn-300w-fast] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import environment, print_table, write_results  # noqa: E402

WIDTH, HEIGHT, FPS = 1280, 720, 30
DLIB_LOOP = """
import sys, time
import dlib, face_recognition_models, imageio.v2 as imageio, numpy as np
det = dlib.get_frontal_face_detector()
pred = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
frames = faces = 0
for frame in imageio.get_reader(sys.argv[1], "ffmpeg"):
    frames += 1
    for r in det(np.asarray(frame), 0):
        pred(np.asarray(frame), r); faces += 1
print(frames, faces)
"""


def make_clip(path: pathlib.Path, seconds: float) -> None:
    """A ``seconds`` long 1280x720 clip: the astronaut's head and shoulders (about 300 px of face) moving
    on a smooth path over a grey background."""
    import imageio.v2 as imageio
    from PIL import Image
    from skimage import data as skdata

    photo = Image.fromarray(skdata.astronaut()).resize((600, 600), Image.BILINEAR)
    writer = imageio.get_writer(path, "ffmpeg", fps=FPS, codec="libx264", quality=8, macro_block_size=2)
    for n in range(int(seconds * FPS)):
        t = n / FPS
        canvas = Image.new("RGB", (WIDTH, HEIGHT), (110, 110, 110))
        canvas.paste(photo, (int(340 + 120 * math.sin(1.3 * t)), int(60 + 30 * math.sin(2.1 * t))))
        writer.append_data(np.asarray(canvas))
    writer.close()


def whole_process(argv: list[str], repeats: int) -> float:
    """Best wall time (s) of a command over ``repeats`` runs."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.strip()[-300:]}")
        best = min(best, time.perf_counter() - start)
    return best


def stages(clip: pathlib.Path, model_name: str, out: pathlib.Path) -> dict[str, float]:
    """Seconds per frame of each stage of the video path, timed alone in this process."""
    from rcn_keras.landmarker import Landmarker
    from rcn_keras.prediction_files import overlay_image
    from rcn_keras.runtimes import ExportedLandmarker
    from rcn_keras.presets import PRESETS
    from rcn_keras.video import read_frames, video_writer

    start = time.perf_counter()
    _, frames, _ = read_frames(clip)
    frames = list(frames)
    n = len(frames)
    times = {"decode": (time.perf_counter() - start) / n}
    twin = PRESETS[model_name].weights_path.with_suffix(".tflite")
    model = ExportedLandmarker(twin) if twin.is_file() else Landmarker.from_preset(model_name)
    model.predict(frames[:2], detector="auto")  # warm-up
    start = time.perf_counter()
    results = []
    for i in range(0, n, 16):
        results += model.predict(frames[i:i + 16], detector="auto")
    times["detect + landmarks"] = (time.perf_counter() - start) / n
    start = time.perf_counter()
    drawn = [np.asarray(overlay_image(r, f)) for r, f in zip(results, frames)]
    times["draw overlay"] = (time.perf_counter() - start) / n
    writer = video_writer(out / "encode.mp4", FPS)
    start = time.perf_counter()
    for image in drawn:
        writer.append_data(image)
    writer.close()
    times["encode"] = (time.perf_counter() - start) / n
    return times


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--model", default="rcn-300w-fast")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--results", default="video_speed")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        clip = tmp / "clip.mp4"
        make_clip(clip, args.seconds)
        frames = int(args.seconds * FPS)
        rcn = [sys.executable, "-m", "rcn_keras.app.cli.main", "predict", str(clip), "--model", args.model]
        rows = []
        for name, extra in (("rcn predict (overlay video)", []), ("rcn predict --no-overlay", ["--no-overlay"])):
            seconds = whole_process(rcn + extra + ["--out", str(tmp / name.split()[-1].strip("()-"))], args.repeats)
            rows.append({"pipeline": name, "seconds": seconds, "frames/s": frames / seconds})
        try:
            seconds = whole_process([sys.executable, "-c", DLIB_LOOP, str(clip)], args.repeats)
            rows.append({"pipeline": "dlib HOG + ERT loop (no overlay)", "seconds": seconds, "frames/s": frames / seconds})
        except RuntimeError as exc:
            print(f"dlib skipped: {exc}")
        dlib_fps = next((r["frames/s"] for r in rows if r["pipeline"].startswith("dlib")), None)
        for r in rows:
            r["x dlib"] = r["frames/s"] / dlib_fps if dlib_fps else None
        print(f"{frames} frames of {WIDTH}x{HEIGHT} at {FPS} fps, one face, model {args.model}, whole process")
        table = print_table(rows, ["pipeline", "seconds", "frames/s", "x dlib"])
        per_frame = stages(clip, args.model, tmp)
        stage_rows = [{"stage": k, "ms / frame": 1000 * v} for k, v in per_frame.items()]
        print("\nstages alone, in one process")
        stage_table = print_table(stage_rows, ["stage", "ms / frame"])
    from rcn_keras.files import atomic_write_text

    atomic_write_text(HERE / "results" / f"{args.results}.md",
                      f"# Video speed\n\n`python benchmarks/video_speed.py {' '.join(argv or sys.argv[1:])}`: "
                      f"{frames} frames of {WIDTH}x{HEIGHT} at {FPS} fps, one face, {args.model}, whole process "
                      f"(best of {args.repeats}).\n\n{table}\n\nStages alone, in one process:\n\n{stage_table}\n")
    print(f"wrote {write_results(args.results, {'rows': rows, 'stages': per_frame, 'environment': environment()})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
