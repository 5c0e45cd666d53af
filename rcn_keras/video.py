"""Landmarks in videos: frames read with imageio + ffmpeg (the ``video`` extra), faces followed from frame to
frame, optional One Euro smoothing of each face's points (Casiez, Roussel, Vogel, CHI 2012: little lag
when a face moves fast, little jitter when it holds still), per-frame JSON and an overlay video."""

from __future__ import annotations

import collections
import json
import math
import os
import pathlib
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from rcn_keras.boxes import LANDMARK_BOX_SCALE
from rcn_keras.errors import first_line
from rcn_keras.extras import require
from rcn_keras.files import atomic_write_bytes, temporary_sibling

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".gif")


# The overlay video: H.264 at imageio's quality 7 with x264's "veryfast" preset (7 ms a 1280x720 frame on
# one core here against 11 for its default "medium", and no larger a file: benchmarks/video_speed.py).
ENCODER = dict(codec="libx264", quality=7, macro_block_size=2, ffmpeg_params=["-preset", "veryfast"])
PENDING_FRAMES = 32  # overlay frames drawn and encoded behind the network at most


def video_writer(path: str | os.PathLike, fps: float):
    """imageio's ffmpeg writer of the overlay video (`ENCODER`)."""
    return _imageio().get_writer(path, "ffmpeg", fps=fps, **ENCODER)


def is_video(path: str | os.PathLike) -> bool:
    return pathlib.Path(str(path)).suffix.lower() in VIDEO_SUFFIXES


def _imageio():
    """imageio's v2 API, with the ffmpeg binary it reads and writes videos with."""
    require("imageio_ffmpeg", "reading videos", "imageio-ffmpeg", "video")
    return require("imageio.v2", "reading videos", "imageio", "video")


def read_frames(path: str | os.PathLike):
    """(frames per second, iterator over RGB uint8 frames, frames the file announces or ``None``) of a
    video file; a one-line error naming the file when it cannot be read."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    if path.suffix.lower() == ".gif":
        return _gif_frames(path)
    imageio = _imageio()
    try:
        reader = imageio.get_reader(path, "ffmpeg")
        meta = reader.get_meta_data()
        fps = float(meta.get("fps") or 25.0)
        duration = meta.get("duration")
        announced = round(float(duration) * fps) if duration and math.isfinite(float(duration)) else None
    except Exception as exc:  # imageio / ffmpeg raise many types for unreadable files
        raise ValueError(f"{path}: cannot read video ({first_line(exc)})") from None

    def frames():
        try:
            for frame in reader:
                frame = np.asarray(frame)
                yield frame if frame.ndim == 3 else np.repeat(frame[..., None], 3, axis=-1)
        except Exception as exc:
            raise ValueError(f"{path}: cannot decode video ({first_line(exc)})") from None
        finally:
            reader.close()

    return fps, frames(), announced


def _gif_frames(path: pathlib.Path):
    """`read_frames` of an animated GIF, with Pillow (frames per second from its first frame's duration)."""
    from PIL import Image, ImageSequence

    try:
        image = Image.open(path)
        duration = float(image.info.get("duration") or 40)
        count = getattr(image, "n_frames", 1)
    except Exception as exc:  # noqa: BLE001  (Pillow raises several types for a bad file)
        raise ValueError(f"{path}: cannot read video ({first_line(exc)})") from None

    def frames():
        try:
            for frame in ImageSequence.Iterator(image):
                yield np.asarray(frame.convert("RGB"))
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"{path}: cannot decode video ({first_line(exc)})") from None
        finally:
            image.close()

    return 1000.0 / max(duration, 1.0), frames(), count


def truncation_warning(path, read: int, announced: int | None) -> str | None:
    """A line when a video ended well before the frames its header announces (a truncated file)."""
    if announced is None or read >= announced - max(2, round(0.02 * announced)):
        return None
    return f"{path}: the video ended after {read} of the {announced} frames its header announces (truncated?)"


class OneEuroFilter:
    """One Euro filter over arrays (e.g. a face's (K, 2) points): an exponential smoother whose cut-off
    frequency rises with the signal's speed. ``min_cutoff`` (Hz) sets the smoothing at rest, ``beta`` how
    fast it lets go when the points move, ``d_cutoff`` the smoothing of the speed estimate. The defaults
    suit points in units of the face size (as `FaceTracks` gives them), picked on 300W validation faces
    by benchmarks/video_smoothing.py: jitter about halved on a still face, a quarter less when it moves."""

    def __init__(self, fps: float, min_cutoff: float = 4.0, beta: float = 20.0, d_cutoff: float = 1.0):
        if fps <= 0 or min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError("One Euro filter needs fps, min_cutoff, d_cutoff > 0 and beta >= 0")
        self.period, self.min_cutoff, self.beta, self.d_cutoff = 1.0 / fps, min_cutoff, beta, d_cutoff
        self.x = self.dx = None

    def _alpha(self, cutoff):
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / self.period)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self.x is None:
            self.x, self.dx = x, np.zeros_like(x)
            return x
        dx = (x - self.x) / self.period
        a_d = self._alpha(self.d_cutoff)
        self.dx = a_d * dx + (1 - a_d) * self.dx
        a = self._alpha(self.min_cutoff + self.beta * np.abs(self.dx))
        self.x = a * x + (1 - a) * self.x
        return self.x


class FaceTracks:
    """Follows faces from frame to frame (each new face joins the nearest track whose last box centre lies
    within half a box side, else starts one) and smooths each track's points with its own filter, in
    units of the face's crop side (speeds in face sizes per second)."""

    def __init__(self, fps: float, smooth: bool = True, **filter_options):
        self.fps, self.smooth, self.options = fps, smooth, filter_options
        self.tracks: list[dict] = []  # {"id", "centre", "size", "filter", "seen"}
        self.next_id = 0

    def update(self, faces: list[dict], frame: int) -> list[dict]:
        """``faces`` of one frame (`Landmarker.predict` faces) with "track" ids and, when smoothing,
        "keypoints" replaced by the filtered points ("raw_keypoints" keeps the model's)."""
        free = [t for t in self.tracks if t["seen"] == frame - 1]
        out = []
        for face in faces:
            x, y, side = (float(v) for v in face["rect"])
            centre = np.array([x + side / 2, y + side / 2])
            near = [(np.hypot(*(t["centre"] - centre)), t) for t in free]
            near = [(d, t) for d, t in near if d < 0.5 * max(side, t["size"])]
            if near:
                track = min(near, key=lambda dt: dt[0])[1]
                free.remove(track)
            else:
                # points are filtered in units of the face's size, so the settings hold for any face size
                track = {"id": self.next_id, "filter": OneEuroFilter(self.fps, **self.options), "unit": side}
                self.next_id += 1
                self.tracks.append(track)
            track.update(centre=centre, size=side, seen=frame)
            face = {**face, "track": track["id"]}
            if self.smooth:
                face["raw_keypoints"] = face["keypoints"]
                face["keypoints"] = track["filter"](face["keypoints"] / track["unit"]) * track["unit"]
            out.append(face)
        self.tracks = [t for t in self.tracks if t["seen"] >= frame - 1]
        return out


# Between two detections a face is followed by its points: the next frame's crop keeps the place and size
# it had against the points on the frame where the detector found it. The detector runs again every
# DETECT_EVERY frames (faces that come in are found within a third of a second at 30 fps) and on the next
# frame after a followed face's mean point confidence falls below LOST (`prediction_files`: a face reads
# 0.15-0.30, a crop of no face about 0.03). Detection is 25 of the 29 ms a 1280x720 frame took
# (benchmarks/video_speed.py).
DETECT_EVERY = 10
LOST = 0.08


def _centre_and_spread(face: dict) -> tuple[np.ndarray, float]:
    """The mean of a face's points and their RMS distance from it."""
    points = np.asarray(face["keypoints"], np.float64)
    centre = points.mean(0)
    return centre, float(np.sqrt(((points - centre) ** 2).sum(1).mean()))


def follow_box(face: dict, anchor: dict) -> tuple[float, float, float, float]:
    """The box ("landmarks" format: the crop is the box enlarged `LANDMARK_BOX_SCALE`) of the crop that
    keeps ``anchor``'s relation between crop and points ({"offset", "ratio"}, `anchor_of`) for ``face``'s
    points."""
    centre, spread = _centre_and_spread(face)
    side = anchor["ratio"] * spread
    cx, cy = centre + anchor["offset"] * spread
    inner = side / LANDMARK_BOX_SCALE
    return (cx - inner / 2, cy - inner / 2, inner, inner)


def anchor_of(face: dict) -> dict:
    """How a face's crop sits against its points (centre offset and side, in units of the points' spread)."""
    centre, spread = _centre_and_spread(face)
    spread = max(spread, 1e-6)
    x, y, side = (float(v) for v in face["rect"])
    return {"offset": (np.array([x + side / 2, y + side / 2]) - centre) / spread, "ratio": side / spread}


class FaceFollower:
    """`Landmarker.predict` of one video frame after another, the detector run every ``detect_every`` frames
    (and after a face is lost) and the faces followed by their points in between (`DETECT_EVERY`)."""

    def __init__(self, landmarker, detect_every: int = DETECT_EVERY, **predict_options):
        self.landmarker, self.detect_every, self.options = landmarker, detect_every, predict_options
        self.faces, self.anchors, self.since = [], [], 0

    def __call__(self, frame) -> dict:
        lost = any(float(np.mean(f["confidence"])) < LOST for f in self.faces)
        if not self.faces or self.since >= self.detect_every - 1 or lost:
            result = self.landmarker.predict(frame, **self.options)[0]
            self.anchors, self.since = [anchor_of(f) for f in result.get("faces", [])], 0
        else:
            boxes = [follow_box(f, a) for f, a in zip(self.faces, self.anchors)]
            result = self.landmarker.predict(frame, boxes=[boxes], **{**self.options, "box_format": "landmarks"})[0]
            self.since += 1
        self.faces = result.get("faces", [])
        return result


def predict_video(landmarker, path: str | os.PathLike, out_dir: str | os.PathLike, smooth: bool = True,
                  overlay: bool = True, max_frames: int | None = None, batch_frames: int = 16, progress=None,
                  box=None, stem: str | None = None, detect_every: int = DETECT_EVERY,
                  **predict_options) -> dict:
    """Keypoints of every face in every frame of a video. Writes ``<stem>_keypoints.json`` ({"schema",
    "video", "fps", "frames": [{"frame", "time", "faces": [...]}], "warning" when the file ended early},
    faces as in keypoints.json plus "track") and, with ``overlay``, ``<stem>_keypoints.mp4``; returns
    the JSON document. With a detector, it runs every ``detect_every`` frames (1: every frame) and faces
    are followed by their points in between (`DETECT_EVERY`). ``stem``: the output name stem (default: the video's; two videos of the same
    name need distinct stems, as `prediction_files.output_stems` gives).
    ``box``: one face box (x, y, w, h) for every frame instead of detection. ``predict_options`` go to
    `Landmarker.predict` (detector, box_format, max_faces, ...)."""
    from rcn_keras.prediction_files import SCHEMA_VERSION, face_json, overlay_image

    path, out_dir = pathlib.Path(path), pathlib.Path(out_dir)
    fps, frames, announced = read_frames(path)
    tracks = FaceTracks(fps, smooth)
    doc = {"schema": SCHEMA_VERSION, "video": str(path), "fps": fps, "smoothing": "one-euro" if smooth else None,
           "frames": []}
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = stem or path.stem
    video_path = out_dir / f"{stem}_keypoints.mp4"
    tmp_video = temporary_sibling(video_path, ".mp4") if overlay else None  # renamed when complete
    writer = video_writer(tmp_video, fps) if overlay else None
    drawing = ThreadPoolExecutor(max_workers=1) if overlay else None  # draws and encodes behind the network
    pending = collections.deque()

    def draw_and_encode(result, rgb):
        image = np.asarray(overlay_image(result, rgb)) if result["faces"] else rgb
        writer.append_data(image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2])  # even sides

    following = box is None and predict_options.get("detector") not in (None, "none") and detect_every > 1
    follower = FaceFollower(landmarker, detect_every, **predict_options) if following else None

    def landmarks(batch):
        if box is not None:
            return landmarker.predict(batch, boxes=[box] * len(batch), **predict_options)
        if follower is None:
            return landmarker.predict(batch, **predict_options)
        return [follower(frame) for frame in batch]  # one at a time: each frame's crops from the last one's points

    def handle(batch, start):
        results = landmarks(batch)
        for i, (rgb, result) in enumerate(zip(batch, results)):
            n = start + i
            faces = tracks.update(result["faces"], n)
            doc["frames"].append({"frame": n, "time": round(n / fps, 4),
                                  "faces": [{**face_json(f), "track": f["track"]} for f in faces]})
            if writer is not None:
                pending.append(drawing.submit(draw_and_encode, {**result, "faces": faces}, rgb))
                while len(pending) > PENDING_FRAMES or (pending and pending[0].done()):
                    pending.popleft().result()  # in order; a write error is raised here

    batch, start = [], 0
    try:
        for n, frame in enumerate(frames):
            if max_frames is not None and n >= max_frames:
                break
            batch.append(frame)
            if len(batch) == batch_frames:
                handle(batch, start)
                start += len(batch)
                batch = []
                if progress is not None:
                    progress(start, None)
        if batch:
            handle(batch, start)
        while pending:
            pending.popleft().result()
    except BaseException:
        if drawing is not None:
            drawing.shutdown(wait=True, cancel_futures=True)
        if writer is not None:
            writer.close()
        if tmp_video is not None:
            tmp_video.unlink(missing_ok=True)
        raise
    if drawing is not None:
        drawing.shutdown(wait=True)
    if writer is not None:
        writer.close()
    if not doc["frames"]:
        if tmp_video is not None:
            tmp_video.unlink(missing_ok=True)
        raise ValueError(f"{path}: the video has no frames")
    warning = None if max_frames is not None else truncation_warning(path, len(doc["frames"]), announced)
    if warning:
        doc["warning"] = warning
        warnings.warn(warning, stacklevel=2)
    atomic_write_bytes(out_dir / f"{stem}_keypoints.json", json.dumps(doc, allow_nan=False).encode())
    if writer is not None:
        os.replace(tmp_video, video_path)
    return doc
