"""Loaders of the real datasets into `FaceSet`s: 300W (folder layout, `.pts`), MTFL (text lists),
AFW (`anno.mat`), and a user's own keypoints of any count (a folder of `.pts`, a CSV, COCO keypoints
JSON), with the paper's stage-A/B preprocessing, optional HDF5 caching and error policy.
"""

from __future__ import annotations

import concurrent.futures
import os
import pathlib
import warnings
from typing import Callable

import numpy as np

from rcn_keras.data import crop
from rcn_keras.data.cache import cached
from rcn_keras.data.faceset import FaceSet
from rcn_keras.data.formats import (Annotation, DataFormatError, load_image, read_afw_anno, read_coco_keypoints,
                                    read_keypoint_csv, read_mtfl_list, read_pts)
from rcn_keras.keypoints import NOT_ANNOTATED, afw5_from_68, partial_68, place_shape

ON_ERROR = ("raise", "skip")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

# 300W folders (relative to the dataset root) and the paper's groupings (docs/model.md 1.1, 7.3).
SUBSETS_300W = {
    "afw": "afw", "helen_train": "helen/trainset", "lfpw_train": "lfpw/trainset",
    "helen_test": "helen/testset", "lfpw_test": "lfpw/testset", "ibug": "ibug",
}
GROUPS_300W = {
    "train": ("afw", "helen_train", "lfpw_train"),
    "common": ("helen_test", "lfpw_test"),
    "challenging": ("ibug",),
    "full": ("helen_test", "lfpw_test", "ibug"),
}


def _check_on_error(on_error: str) -> None:
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")


def _images_beside(pts: pathlib.Path) -> list[pathlib.Path]:
    """Every image file a `.pts` file could be read with (what the cache key depends on)."""
    return [c for s in IMAGE_SUFFIXES + tuple(s.upper() for s in IMAGE_SUFFIXES) if (c := pts.with_suffix(s)).is_file()]


def image_beside(pts: pathlib.Path) -> pathlib.Path:
    for suffix in IMAGE_SUFFIXES + tuple(s.upper() for s in IMAGE_SUFFIXES):
        candidate = pts.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    raise DataFormatError(pts, f"no image beside it (looked for {', '.join(IMAGE_SUFFIXES)})")


def check_points(source, edge: np.ndarray, width: int, height: int, has_box: bool = False) -> None:
    """A `DataFormatError` naming ``source`` for annotations no face can have: non-finite values, all
    points at one place (a zero-size face; fine when a face box gives the size: ``has_box``), or points
    more than an image size outside the image."""
    p = np.asarray(edge, np.float64)
    if not np.all(np.isfinite(p)):
        raise DataFormatError(source, "keypoints must be finite numbers")
    if not has_box and np.ptp(p[:, 0]) <= 0 and np.ptp(p[:, 1]) <= 0:
        what = "one annotated keypoint" if len(p) == 1 else "all keypoints are at one place"
        raise DataFormatError(source, f"{what}: the face's size is unknown; give a face box (CSV box_x, box_y, "
                                      f"box_w, box_h columns; COCO bbox)")
    if (p[:, 0].min() < -width or p[:, 0].max() > 2 * width or p[:, 1].min() < -height
            or p[:, 1].max() > 2 * height):
        raise DataFormatError(source, f"keypoints lie far outside the {width}x{height} image "
                                      f"(x {p[:, 0].min():.0f}..{p[:, 0].max():.0f}, "
                                      f"y {p[:, 1].min():.0f}..{p[:, 1].max():.0f})")


OUTSIDE_REMARK = 0.1  # a point this far outside the image (a fraction of its side) is remarked on by the check


def outside_remark(source, edge: np.ndarray, width: int, height: int) -> str | None:
    """A remark for `rcn data check` (not an error: faces at the image's edge have points outside it) when
    a point lies more than `OUTSIDE_REMARK` of the image's size outside the image."""
    p = np.asarray(edge, np.float64)
    over = np.maximum.reduce([-p[:, 0] / width, p[:, 0] / width - 1, -p[:, 1] / height, p[:, 1] / height - 1])
    if over.max() <= OUTSIDE_REMARK:
        return None
    j = int(np.argmax(over))
    return (f"{source}: point {j} at ({p[j, 0]:.0f}, {p[j, 1]:.0f}) lies {over[j]:.0%} of the image's size "
            f"outside the {width}x{height} image: check the annotation")


def _face_from_points(image: np.ndarray, edge: np.ndarray, codes: np.ndarray, rule: str | None = None,
                      box=None, size: int = crop.STAGE_A_SIZE) -> dict:
    """Stages A and B for one face whose keypoints are in edge coordinates of ``image``: the crop from the
    face ``box`` (x, y, w, h, taken as the tight box of the landmarks) when one is given, else from the
    annotated points by the scheme's crop ``rule`` (`rcn_keras.keypoints.CROP_RULES`; ``None``: the
    paper's rule for 5 or 68 points), ``size`` pixels square (`crop.crop_side`). Points that are not annotated
    (code `NOT_ANNOTATED`) are placed at the centre of the others so that they move with the crop and
    never count."""
    h, w = image.shape[:2]
    edge = np.asarray(edge, np.float64).copy()
    hidden = np.asarray(codes) == NOT_ANNOTATED
    if hidden.any():
        edge[hidden] = edge[~hidden].mean(axis=0)
    rule = crop.crop_rule(rule, len(edge))
    if box is not None:
        corners = crop.box_corners(box)
        box_a = crop.box_from_all_points(corners, crop.W300_STAGE_A_ENLARGE)
    elif rule == "eyes_mouth":
        box_a = crop.box_from_5_points(edge, w, h, crop.MTFL_STAGE_A_RATIO)
    else:
        box_a = crop.box_from_all_points(edge[~hidden], crop.W300_STAGE_A_ENLARGE)
    loose, pad_a = crop.crop_square(image, box_a, size)
    kp = crop.to_crop_frame(edge, box_a, size)
    if box is not None:
        rect = crop.stage_b_rect(crop.to_crop_frame(corners, box_a, size), "points", size)
    else:
        rect = crop.stage_b_rect(kp[~hidden], rule, size)
    pad_b = crop.stage_b_pad(pad_a, rect, size)
    return dict(image=loose, keypoints=kp.astype(np.float32), rect=rect, pad=pad_b,
                codes=crop.clear_unpadded_codes(codes, pad_b))


def _size_tag(crop_size: int) -> str:
    """The cache-name suffix of face sets cropped at another side than the paper's 160."""
    return "" if crop_size == crop.STAGE_A_SIZE else f"-{crop_size}px"


def _with_size(options: dict, crop_size: int) -> dict:
    """Cache options with the crop side (left out at 160, so the caches written before it stay valid)."""
    return options if crop_size == crop.STAGE_A_SIZE else {**options, "crop_size": crop_size}


def _build(items: list, process: Callable, on_error: str, workers: int | None = None) -> FaceSet:
    """Run ``process(item) -> (name, group, face dict)`` over items in threads, applying the error policy."""
    faces, skipped = [], []
    workers = workers or min(8, (os.cpu_count() or 2) * 2)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(process, item) for item in items]
        for item, fut in zip(items, futures):
            try:
                faces.append(fut.result())
            except (DataFormatError, ValueError) as exc:
                if on_error == "raise":
                    for f in futures:
                        f.cancel()
                    raise
                skipped.append((str(item[0] if isinstance(item, tuple) else item), str(exc)))
    if skipped:
        warnings.warn(f"skipped {len(skipped)} of {len(items)} faces (on_error='skip'); first: {skipped[0][1]}",
                      stacklevel=3)
    if not faces:
        raise DataFormatError(str(items[0][0]) if items else "<none>", "no usable faces were loaded"
                              + (f" ({len(skipped)} skipped)" if skipped else ""))
    return FaceSet(
        images=np.stack([f["image"] for _, _, f in faces]),
        keypoints=np.stack([f["keypoints"] for _, _, f in faces]).astype(np.float32),
        rects=np.stack([f["rect"] for _, _, f in faces]).astype(np.float32),
        border_codes=np.stack([f["codes"] for _, _, f in faces]).astype(np.int32),
        pads=np.stack([f["pad"] for _, _, f in faces]).astype(np.float32),
        names=[n for n, _, _ in faces], groups=[g for _, g, _ in faces], skipped=skipped)


def list_pts(folder: str | os.PathLike, recursive: bool = False) -> list[pathlib.Path]:
    """The `.pts` files of a folder (``recursive``: and below it), sorted; a clear error if the folder is
    missing or has none."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise DataFormatError(folder, "dataset folder not found")
    files = sorted(folder.rglob("*.pts") if recursive else folder.glob("*.pts"))
    if not files:
        raise DataFormatError(folder, "no .pts files in this folder" + (" or below it" if recursive else ""))
    return files


def load_300w(root: str | os.PathLike, subsets=("afw", "helen_train"), num_keypoints: int = 68,
              on_error: str = "raise", cache_dir: str | os.PathLike | None = None,
              crop_size: int = crop.STAGE_A_SIZE) -> FaceSet:
    """Load 300W-layout folders under ``root`` (``subsets``: keys of `SUBSETS_300W` or of
    `GROUPS_300W`, e.g. "train", "common"), preprocessed as docs/model.md 1.2-1.3.

    ``num_keypoints=5`` derives the 5 points of the paper's AFW protocol from the 68 (`afw5_from_68`)
    and crops as MTFL. 300W `.pts` are 1-based pixel centres: we subtract 0.5 to get edge coordinates.
    """
    _check_on_error(on_error)
    if num_keypoints not in (5, 68):
        raise ValueError(f"num_keypoints must be 68 or 5 (derived), got {num_keypoints}")
    if isinstance(subsets, str):
        subsets = (subsets,)
    names = []
    for s in subsets:
        if s in GROUPS_300W:
            names.extend(GROUPS_300W[s])
        elif s in SUBSETS_300W:
            names.append(s)
        else:
            raise ValueError(f"unknown 300W subset {s!r}; allowed: {sorted(SUBSETS_300W) + sorted(GROUPS_300W)}")
    root = pathlib.Path(root)
    items = [(pts, name) for name in dict.fromkeys(names) for pts in list_pts(root / SUBSETS_300W[name])]

    def process(item):
        pts, group = item
        raw = read_pts(pts, n_points=68)
        image = load_image(image_beside(pts))
        h, w = image.shape[:2]
        check_points(pts, raw, w, h)
        codes = crop.border_codes(raw, w, h)
        edge = raw - 0.5
        if num_keypoints == 5:
            edge, codes = afw5_from_68(edge), np.zeros(5, np.int32)
        return pts.stem, group, _face_from_points(image, edge, codes, size=crop_size)

    files = [f for p, _ in items for f in (p, *_images_beside(p))]
    options = {"loader": "300w", "subsets": list(dict.fromkeys(names)), "k": num_keypoints, "on_error": on_error}
    tag = "-".join(dict.fromkeys(names))
    return cached(cache_dir, f"300w-{tag}-{num_keypoints}pt" + _size_tag(crop_size), files, _with_size(options, crop_size),
                  lambda: _build(items, process, on_error))


def load_mtfl(root: str | os.PathLike, list_file: str = "training.txt", on_error: str = "raise",
              cache_dir: str | os.PathLike | None = None, crop_size: int = crop.STAGE_A_SIZE) -> FaceSet:
    """Load MTFL (``training.txt``: the 10,000 train+validation faces; ``testing.txt``: AFLW test).

    Image paths in the list are relative to ``root`` (Windows ``\\`` accepted). Coordinates are taken
    as 0-based pixel centres. Split train/validation with ``FaceSet.split(1000)`` (docs/model.md 1.1).
    """
    _check_on_error(on_error)
    root = pathlib.Path(root)
    records = read_mtfl_list(root / list_file)

    def process(rec):
        image = load_image(root / rec.image)
        check_points(root / rec.image, rec.keypoints + 0.5, image.shape[1], image.shape[0])
        return rec.image, "aflw" if "testing" in list_file else "mtfl", \
            _face_from_points(image, rec.keypoints + 0.5, np.zeros(5, np.int32), size=crop_size)

    items = [(root / r.image, r) for r in records]
    return cached(cache_dir, f"mtfl-{pathlib.Path(list_file).stem}" + _size_tag(crop_size),
                  [root / list_file] + [p for p, _ in items],
                  _with_size({"loader": "mtfl", "list": list_file, "on_error": on_error}, crop_size),
                  lambda: _build(items, lambda it: process(it[1]), on_error))


def load_mtfl_partial68(root: str | os.PathLike, mean_shape: np.ndarray, on_error: str = "raise",
                        cache_dir: str | os.PathLike | None = None, crop_size: int = crop.STAGE_A_SIZE) -> FaceSet:
    """MTFL's ``training.txt`` faces as partially labelled 68-point faces (`keypoints.partial_68`, issue 32),
    each cropped as a 68-point face is: from the tight box of ``mean_shape`` (68, 2, any frame) placed on
    its 5 points. Never ``testing.txt``: that is the AFLW test set."""
    _check_on_error(on_error)
    root = pathlib.Path(root)
    records = read_mtfl_list(root / "training.txt")
    mean_shape = np.asarray(mean_shape, np.float64)
    if mean_shape.shape != (68, 2) or not np.all(np.isfinite(mean_shape)):
        raise ValueError(f"load_mtfl_partial68 needs a finite (68, 2) mean shape, got {mean_shape.shape}")

    def process(rec):
        image = load_image(root / rec.image)
        edge5 = rec.keypoints + 0.5
        check_points(root / rec.image, edge5, image.shape[1], image.shape[0])
        placed = place_shape(mean_shape, edge5)
        lo, hi = placed.min(0), placed.max(0)
        points, codes = partial_68(edge5)
        return rec.image, "mtfl", _face_from_points(image, points, codes, box=(*lo, *(hi - lo)), size=crop_size)

    items = [(root / r.image, r) for r in records]
    options = {"loader": "mtfl-partial68", "mean_shape": np.round(mean_shape, 3).tolist(), "on_error": on_error}
    return cached(cache_dir, "mtfl-training-partial68" + _size_tag(crop_size), [root / "training.txt"]
                  + [p for p, _ in items], _with_size(options, crop_size),
                  lambda: _build(items, lambda it: process(it[1]), on_error))


def load_afw(root: str | os.PathLike, anno: str = "anno.mat", on_error: str = "raise",
             cache_dir: str | os.PathLike | None = None, crop_size: int = crop.STAGE_A_SIZE) -> FaceSet:
    """Load the AFW 5-point test set from the original ``anno.mat`` (docs/model.md 7.4): faces with a NaN among
    their 6 points are skipped (and counted in ``skipped``); the mouth centre is dropped."""
    _check_on_error(on_error)
    root = pathlib.Path(root)
    faces = read_afw_anno(root / anno)
    finite = [bool(np.all(np.isfinite(f.points6))) for f in faces]
    usable = [f for f, ok in zip(faces, finite) if ok]
    nan_skipped = [(f.image, "NaN among the 6 AFW points") for f, ok in zip(faces, finite) if not ok]

    def process(item):
        path, face = item
        image = load_image(path)
        return face.image, "afw", _face_from_points(image, face.points5 + 0.5, np.zeros(5, np.int32), size=crop_size)

    items = [(root / f.image, f) for f in usable]

    def build():
        out = _build(items, process, on_error)
        out.skipped = nan_skipped + out.skipped
        return out

    return cached(cache_dir, "afw-anno" + _size_tag(crop_size), [root / anno] + [p for p, _ in items],
                  _with_size({"loader": "afw", "on_error": on_error}, crop_size), build)


def _check_count(where: str, found: int, num_keypoints: int | None) -> None:
    if num_keypoints is not None and found != num_keypoints:
        raise DataFormatError(where, f"{found} keypoints per face, but the keypoint scheme has {num_keypoints}")


def annotation_image(base: pathlib.Path, ann: Annotation) -> pathlib.Path:
    """The image file of a CSV / COCO annotation (relative to ``base``); a `DataFormatError` naming the
    row or annotation when it is missing."""
    path = base / ann.image
    if not path.is_file():
        raise DataFormatError(ann.where, f"image {ann.image} not found (looked for {path})")
    return path


def coco_image_folder(path: pathlib.Path, annotations: list[Annotation]) -> pathlib.Path:
    """Where a COCO file's ``file_name``s are: its own folder, or an ``images/`` folder beside it."""
    base = path.parent
    if not (base / annotations[0].image).is_file() and (base / "images" / annotations[0].image).is_file():
        base = base / "images"
    return base


def load_annotations(annotations: list[Annotation], base: pathlib.Path, groups: str | list[str],
                     num_keypoints: int | None, crop_rule: str, on_error: str, cache_name: str,
                     cache_files: list[pathlib.Path], cache_dir, crop_size: int = crop.STAGE_A_SIZE) -> FaceSet:
    """Faces of generic `Annotation`s (images relative to ``base``; ``groups``: one subset label for all
    or one per annotation): cropped from the box when one is given, else from the annotated points by
    ``crop_rule``. Every reader gives one point count per file, checked here once."""
    _check_on_error(on_error)
    if annotations:
        _check_count(annotations[0].where, len(annotations[0].keypoints), num_keypoints)
    seen: dict[str, int] = {}
    items = []
    labels = [groups] * len(annotations) if isinstance(groups, str) else list(groups)
    for ann, group in zip(annotations, labels):
        seen[ann.image] = seen.get(ann.image, 0) + 1
        name = ann.image if seen[ann.image] == 1 else f"{ann.image}#{seen[ann.image]}"
        items.append((base / ann.image, name, group, ann))

    def process(item):
        path, name, group, ann = item
        image = load_image(annotation_image(base, ann))
        h, w = image.shape[:2]
        check_points(ann.where, ann.keypoints[ann.annotated], w, h, has_box=ann.box is not None)
        codes = np.where(ann.annotated, 0, NOT_ANNOTATED).astype(np.int32)
        return name, group, _face_from_points(image, ann.keypoints, codes, crop_rule, ann.box, crop_size)

    files = cache_files + [p for p, _, _, _ in items]
    options = {"loader": cache_name, "k": num_keypoints, "rule": crop_rule, "on_error": on_error}
    return cached(cache_dir, cache_name + _size_tag(crop_size), files, _with_size(options, crop_size),
                  lambda: _build(items, process, on_error))


def load_keypoint_csv(path: str | os.PathLike, num_keypoints: int | None = None, crop_rule: str = "points",
                      on_error: str = "raise", cache_dir: str | os.PathLike | None = None,
                      crop_size: int = crop.STAGE_A_SIZE) -> FaceSet:
    """Faces of a keypoint CSV (`read_keypoint_csv`; image paths relative to the CSV's folder)."""
    path = pathlib.Path(path)
    anns = read_keypoint_csv(path)
    return load_annotations(anns, path.parent, path.stem, num_keypoints, crop_rule, on_error,
                            f"csv-{path.stem}", [path], cache_dir, crop_size)


def load_coco(path: str | os.PathLike, num_keypoints: int | None = None, crop_rule: str = "points",
              on_error: str = "raise", cache_dir: str | os.PathLike | None = None,
              crop_size: int = crop.STAGE_A_SIZE) -> FaceSet:
    """Faces of a COCO keypoints JSON (`read_coco_keypoints`; ``file_name`` relative to the JSON's folder,
    or to an ``images/`` folder beside it when the file is there)."""
    path = pathlib.Path(path)
    anns, _ = read_coco_keypoints(path)
    return load_annotations(anns, coco_image_folder(path, anns), path.stem, num_keypoints, crop_rule, on_error, f"coco-{path.stem}",
                            [path], cache_dir, crop_size)


def load_pts_folder(root: str | os.PathLike, num_keypoints: int | None = None, crop_rule: str = "points",
                    on_error: str = "raise", cache_dir: str | os.PathLike | None = None,
                    crop_size: int = crop.STAGE_A_SIZE) -> FaceSet:
    """Faces of every `.pts` file under ``root`` (any point count, 1-based as 300W; searched recursively)
    with the image of the same name beside it. The group of a face is its folder relative to ``root``."""
    root = pathlib.Path(root)
    files = list_pts(root, recursive=True)
    anns, groups = [], []
    for pts in files:
        points = read_pts(pts)
        _check_count(str(pts), len(points), num_keypoints)
        num_keypoints = len(points)
        image = image_beside(pts)
        anns.append(Annotation(str(image.relative_to(root)), points - 0.5, np.ones(len(points), bool), None, str(pts)))
        groups.append(pts.parent.relative_to(root).as_posix() if pts.parent != root else root.name or "pts")
    return load_annotations(anns, root, groups, num_keypoints, crop_rule, on_error, f"pts-{root.name or 'root'}",
                            files, cache_dir, crop_size)


def image_files(source: str, root: str | os.PathLike, subsets=(), list_file: str = "testing.txt") -> set[pathlib.Path]:
    """The image files (resolved) a data set's faces come from, read from its annotations without
    decoding an image: 300W ``subsets``, an MTFL ``list_file``, a keypoint CSV, a COCO JSON or a ``pts``
    folder. What `sources.load_splits` compares extra training faces with, to keep test faces out."""
    root = pathlib.Path(root)
    if source == "300w":
        names = [n for s in ((subsets,) if isinstance(subsets, str) else subsets) for n in GROUPS_300W.get(s, [s])]
        pts = [p for n in dict.fromkeys(names) if n in SUBSETS_300W for p in list_pts(root / SUBSETS_300W[n])]
        paths = [i for p in pts for i in _images_beside(p)[:1]]
    elif source == "mtfl":
        paths = [root / r.image for r in read_mtfl_list(root / list_file)]
    elif source == "csv":
        paths = [root.parent / a.image for a in read_keypoint_csv(root)]
    elif source == "coco":
        anns, _ = read_coco_keypoints(root)
        paths = [coco_image_folder(root, anns) / a.image for a in anns] if anns else []
    elif source == "pts":
        paths = [i for p in list_pts(root, recursive=True) for i in _images_beside(p)[:1]]
    else:
        raise ValueError(f"image_files: unknown source {source!r}")
    return {p.resolve() for p in paths}
