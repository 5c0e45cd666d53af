"""Writers of small dataset fixtures in the exact on-disk formats (300W folders, MTFL list, AFW anno.mat), and
the settings of a tiny training run on synthetic faces."""

from __future__ import annotations

import pathlib

import h5py
import numpy as np
from PIL import Image

from rcn_keras.data.formats import write_pts
from rcn_keras.data.synthetic import synthetic_face

# `preset_train_config` overrides for a run of seconds: 48 synthetic faces, 4 branches, no maps drawn
TINY_TRAINING = {"data.synthetic_train": 48, "data.synthetic_validation": 8, "data.synthetic_test": 8,
                 "batch_size": 16, "model_options": {"branches": 4}, "visualize_every": 0}


def face_image(seed: int, size: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image (size x size) holding a synthetic face, and its 68 points as 1-based pixel centres."""
    img160, pts = synthetic_face(seed)
    img = Image.fromarray(img160).resize((size, size), Image.BILINEAR).convert("RGB")
    return np.asarray(img), pts * (size / 160.0) + 0.5


def write_300w_folder(folder: pathlib.Path, n: int, seed: int = 0) -> list[pathlib.Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        img, pts = face_image(seed + i)
        Image.fromarray(img).save(folder / f"face_{i}.jpg", quality=95)
        write_pts(folder / f"face_{i}.pts", pts)
        files.append(folder / f"face_{i}.pts")
    return files


# Image sizes of the published MTFL (LFW 250x250, web faces 400x400 or 160x216, AFLW 150x150).
MTFL_SIZES = ((250, 250), (400, 400), (160, 216), (150, 150))


def write_mtfl(root: pathlib.Path, n: int, list_name: str = "training.txt") -> pathlib.Path:
    """A list in the exact published MTFL format, with its images: ``path x1..x5 y1..y5 gender smile glasses
    pose`` per line, CRLF line ends, a leading space on every line but the first and a last line of one
    space; training lists name ``lfw_5590\\`` images (Windows separators), test lists ``AFLW/`` ones;
    images of the published sizes in turn."""
    folder, sep = ("AFLW", "/") if "test" in list_name else ("lfw_5590", "\\")
    (root / folder).mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        w, h = MTFL_SIZES[i % len(MTFL_SIZES)]
        img, pts = face_image(100 + i, size=min(w, h))
        canvas = np.full((h, w, 3), 90, np.uint8)
        canvas[:img.shape[0], :img.shape[1]] = img
        Image.fromarray(canvas).save(root / folder / f"img_{i}.jpg")
        five = np.stack([pts[36:42].mean(0), pts[42:48].mean(0), pts[30], pts[48], pts[54]]) - 1.0
        coords = " ".join(f"{v:.6f}" for v in np.concatenate([five[:, 0], five[:, 1]]))
        lines.append(f"{folder}{sep}img_{i}.jpg {coords} 1 2 2 3")
    path = root / list_name
    path.write_bytes(("\r\n ".join(lines) + "\r\n ").encode())
    return path


def write_afw_anno(root: pathlib.Path, faces_per_image: list[list[np.ndarray]]) -> pathlib.Path:
    """A MATLAB v7.3 anno.mat: 'anno' is a 4 x N cell (name, boxes, poses, landmarks), faces as cells."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "anno.mat"
    with h5py.File(path, "w") as f:
        refs = f.create_group("#refs#")
        counter = iter(range(10**6))

        def put(data):
            return refs.create_dataset(f"r{next(counter)}", data=data).ref

        def cell(items):
            ds = refs.create_dataset(f"c{next(counter)}", (len(items), 1), dtype=h5py.ref_dtype)
            for j, item in enumerate(items):
                ds[j, 0] = put(item)
            return ds.ref

        anno = f.create_dataset("anno", (4, len(faces_per_image)), dtype=h5py.ref_dtype)
        for i, faces in enumerate(faces_per_image):
            name = f"img_{i}.jpg"
            img, pts = face_image(200 + i)
            Image.fromarray(img).save(root / name)
            anno[0, i] = put(np.array([[ord(c)] for c in name], dtype=np.uint16))
            anno[1, i] = cell([np.array([[10.0, 150.0], [10.0, 150.0]]) for _ in faces])
            anno[2, i] = cell([np.array([[0.1], [0.0], [0.05]]) for _ in faces])
            anno[3, i] = cell([p.T for p in faces])
    return path


def write_keypoint_csv(root: pathlib.Path, n: int, points: list[int], seed: int = 0, header: bool = True,
                       boxes: bool = False, hide: dict[int, list[int]] | None = None) -> pathlib.Path:
    """A keypoint CSV (image, x1, y1, ..., 0-based pixel centres) of ``n`` synthetic faces with the 68-point
    indices ``points``; ``boxes`` adds box_x..box_h columns (the landmarks' tight box); ``hide`` maps a face
    to points written empty (not annotated)."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    cols = ["image"] + [f"{a}{i}" for i in range(len(points)) for a in "xy"] + (
        ["box_x", "box_y", "box_w", "box_h"] if boxes else [])
    lines = [",".join(cols)] if header else []
    for i in range(n):
        img, pts = face_image(seed + i)
        Image.fromarray(img).save(root / "img" / f"f{i}.png")
        sub = pts[points] - 1.0
        fields = [f"img/f{i}.png"]
        for j, (x, y) in enumerate(sub):
            fields += ["", ""] if j in (hide or {}).get(i, []) else [f"{x:.3f}", f"{y:.3f}"]
        if boxes:
            edge = pts - 0.5
            lo, hi = edge.min(0), edge.max(0)
            fields += [f"{v:.2f}" for v in (lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1])]
        lines.append(",".join(fields))
    path = root / "points.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_coco(root: pathlib.Path, n: int, points: list[int], seed: int = 0, names: bool = True,
               hide: dict[int, list[int]] | None = None) -> pathlib.Path:
    """A COCO keypoints JSON of ``n`` synthetic faces (images in ``root/images``) with the 68-point
    indices ``points``; ``hide`` maps a face to points written with v = 0."""
    import json

    (root / "images").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(n):
        img, pts = face_image(seed + i)
        Image.fromarray(img).save(root / "images" / f"f{i}.jpg", quality=95)
        images.append({"id": i + 1, "file_name": f"f{i}.jpg", "width": img.shape[1], "height": img.shape[0]})
        kp = []
        for j, (x, y) in enumerate(pts[points] - 1.0):
            kp += [0, 0, 0] if j in (hide or {}).get(i, []) else [round(float(x), 3), round(float(y), 3), 2]
        edge = pts - 0.5
        lo, hi = edge.min(0), edge.max(0)
        anns.append({"id": 100 + i, "image_id": i + 1, "category_id": 1, "iscrowd": 0, "keypoints": kp,
                     "num_keypoints": len(points), "bbox": [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]),
                                                            float(hi[1] - lo[1])]})
    cats = [{"id": 1, "name": "face", **({"keypoints": [f"p{j}" for j in points]} if names else {})}]
    path = root / "faces.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path
