"""Videos (rcn_keras.video): One Euro smoothing, face tracks, and `rcn predict clip.mp4` end to end."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from rcn_keras.app.cli import main as cli
from rcn_keras.video import FaceTracks, OneEuroFilter, is_video

HAS_VIDEO = importlib.util.find_spec("imageio_ffmpeg") is not None


def test_one_euro_smooths_a_still_signal_and_follows_a_move():
    rng = np.random.default_rng(0)
    f = OneEuroFilter(30.0, min_cutoff=1.0, beta=0.5)
    noisy = 5.0 + rng.normal(0, 0.2, 300)
    smooth = np.array([f(np.array([v]))[0] for v in noisy])
    assert smooth[50:].std() < 0.5 * noisy[50:].std() and abs(smooth[50:].mean() - 5) < 0.05
    g = OneEuroFilter(30.0, min_cutoff=1.0, beta=0.5)
    step = np.array([g(np.array([0.0 if i < 10 else 10.0]))[0] for i in range(40)])
    assert step[-1] == pytest.approx(10.0, abs=0.1)  # catches up with a jump
    with pytest.raises(ValueError, match="fps"):
        OneEuroFilter(0)


def test_face_tracks_follow_faces_and_smooth_each_alone():
    def face(x, points):
        return {"rect": np.array([x, 10.0, 50.0]), "keypoints": np.asarray(points, float), "score": 0.9}

    tracks = FaceTracks(25.0)
    a = tracks.update([face(0, [[10, 10]]), face(200, [[210, 10]])], 0)
    b = tracks.update([face(205, [[215, 10]]), face(3, [[13, 10]])], 1)  # order swapped, both moved a little
    assert [f["track"] for f in a] == [0, 1] and [f["track"] for f in b] == [1, 0]
    assert b[0]["raw_keypoints"].tolist() == [[215, 10]] and 210 <= b[0]["keypoints"][0, 0] <= 215
    c = tracks.update([face(600, [[610, 10]])], 2)  # far from both: a new face
    assert c[0]["track"] == 2 and c[0]["keypoints"].tolist() == [[610, 10]]
    assert FaceTracks(25.0, smooth=False).update([face(0, [[1, 1]])], 0)[0]["keypoints"].tolist() == [[1, 1]]


def test_is_video():
    assert is_video("a/b.MP4") and is_video("x.webm") and not is_video("x.png")


@pytest.mark.skipif(not HAS_VIDEO, reason="imageio-ffmpeg (the video extra) not installed")
def test_predict_video_writes_frames_json_and_overlay_video(tmp_path, capsys):
    import imageio.v2 as imageio

    from rcn_keras.data.synthetic import synthetic_faces

    face = synthetic_faces(1, 5, seed=3).images[0]
    writer = imageio.get_writer(tmp_path / "clip.mp4", "ffmpeg", fps=10, codec="libx264", macro_block_size=2)
    for t in range(6):
        frame = np.full((200, 240), 60, np.uint8)
        frame[20:180, 30 + 5 * t:190 + 5 * t] = face
        writer.append_data(np.repeat(frame[..., None], 3, -1))
    writer.close()
    code = cli.main(["predict", str(tmp_path / "clip.mp4"), "--model", "rcn-afw5", "--box", "60,45,110,110",
                     "--out", str(tmp_path / "out")])
    assert code == 0 and "6 frame(s), 6 face(s)" in capsys.readouterr().out
    doc = json.loads((tmp_path / "out" / "clip_keypoints.json").read_text())
    assert doc["schema"] == 2 and doc["fps"] == pytest.approx(10) and len(doc["frames"]) == 6
    assert {f["faces"][0]["track"] for f in doc["frames"]} == {0} and doc["smoothing"] == "one-euro"
    assert len(doc["frames"][0]["faces"][0]["keypoints"]) == 5
    reader = imageio.get_reader(tmp_path / "out" / "clip_keypoints.mp4", "ffmpeg")
    assert sum(1 for _ in reader) == 6
    assert [p.name for p in (tmp_path / "out").glob(".*")] == [".rcn-output"]  # the mark; no half-written file or lock
    (tmp_path / "bad.mp4").write_text("not a video")
    assert cli.main(["predict", str(tmp_path / "bad.mp4"), "--model", "rcn-afw5", "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.mp4" in err[0]


def _write_clip(path, frames: int = 6, fps: int = 10):
    import imageio.v2 as imageio

    from rcn_keras.data.synthetic import synthetic_faces

    face = synthetic_faces(1, 5, seed=3).images[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio.get_writer(path, "ffmpeg", fps=fps, codec="libx264", macro_block_size=2)
    for t in range(frames):
        frame = np.full((200, 240), 60, np.uint8)
        frame[20:180, 30 + t % 40:190 + t % 40] = face
        writer.append_data(np.repeat(frame[..., None], 3, -1))
    writer.close()
    return path


@pytest.mark.skipif(not HAS_VIDEO, reason="imageio-ffmpeg (the video extra) not installed")
def test_two_videos_of_one_name_get_two_outputs(tmp_path, capsys):
    a, b = _write_clip(tmp_path / "a" / "clip.mp4", 3), _write_clip(tmp_path / "b" / "clip.mp4", 4)
    assert cli.main(["predict", str(a), str(b), "--model", "rcn-afw5", "--box", "60,45,110,110", "--no-overlay",
                     "--out", str(tmp_path / "out")]) == 0
    docs = {p.name: json.loads(p.read_text()) for p in (tmp_path / "out").glob("*.json")}
    assert {n: len(d["frames"]) for n, d in docs.items()} == {"a_clip_keypoints.json": 3, "b_clip_keypoints.json": 4}


@pytest.mark.skipif(not HAS_VIDEO, reason="imageio-ffmpeg (the video extra) not installed")
def test_a_truncated_video_is_said(tmp_path, capsys):
    clip = _write_clip(tmp_path / "long.mkv", 60)  # Matroska: the header (60 frames) comes first
    data = clip.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) * 4 // 5])
    code = cli.main(["predict", str(cut), "--model", "rcn-afw5", "--box", "60,45,110,110", "--no-overlay",
                     "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    if code == 2:  # this ffmpeg cannot read the cut file at all: still one line naming it
        assert len(err.strip().splitlines()) == 1 and "cut.mkv" in err
        return
    doc = json.loads((tmp_path / "out" / "cut_keypoints.json").read_text())
    assert len(doc["frames"]) < 60
    assert "truncated" in doc["warning"] and "rcn: warning:" in err and "cut.mkv" in err


def test_faces_are_followed_by_their_points_between_detections():
    """The detector runs on frame 0, every `detect_every` frames and after a face is lost; between, each
    face's crop follows its points, keeping its place and size against them from the detection frame."""
    from rcn_keras.landmarker import Landmarker
    from rcn_keras.video import FaceFollower, LOST, follow_box, anchor_of
    from data_fixtures import face_image

    img, truth = face_image(5, size=200)
    calls = []
    from rcn_keras.detection.registry import make_detector

    detector = make_detector("auto")
    if detector is None:
        pytest.skip("no face detector installed")
    detect = detector.detect

    def counting(rgb):
        calls.append(len(calls))
        return detect(rgb)

    detector.detect = counting
    model = Landmarker.from_preset("rcn-300w-fast")
    follower = FaceFollower(model, 4, detector=detector)
    errors = []
    for n in range(9):  # the face moves 3 px right a frame
        frame = np.full((260, 300, 3), 90, np.uint8)
        frame[30:230, 20 + 3 * n:220 + 3 * n] = img
        faces = follower(frame)["faces"]
        assert len(faces) == 1
        errors.append(np.abs(faces[0]["keypoints"] - (truth - 1 + [20 + 3 * n, 30])).mean())
    assert len(calls) == 3  # frames 0, 4 and 8
    assert max(errors) < 2 * min(errors) + 1.0  # followed frames read as well as detected ones
    # the followed crop keeps the detection frame's relation to the points; a lost face is looked for again
    face = {"keypoints": truth, "rect": np.array([10.0, 20.0, 150.0])}
    x, y, w, h = follow_box(face, anchor_of(face))
    assert (x + w / 2, y + h / 2, w * 1.3) == pytest.approx((85.0, 95.0, 150.0))
    follower.faces[0]["confidence"] = np.full(68, LOST / 2)
    follower(frame)
    assert len(calls) == 4
