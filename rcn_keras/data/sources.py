"""Where faces come from: a `DataConfig` (synthetic, a 300W-layout folder, MTFL lists, AFW's anno.mat, or
a user's own keypoints: a folder of `.pts`, a CSV, a COCO keypoints JSON) and the one dispatch from a
source name to face sets: `load_faces` (one set) and `load_splits` (train / validation / test)."""

from __future__ import annotations

import dataclasses
import pathlib
from dataclasses import dataclass

import numpy as np

from rcn_keras.data import datasets
from rcn_keras.data.crop import STAGE_A_SIZE
from rcn_keras.data.faceset import FaceSet
from rcn_keras.data.synthetic import synthetic_faces
from rcn_keras.keypoints import is_annotated

# A user's own keypoints, any count (`rcn_keras.data.datasets`): a folder of .pts files, a CSV, COCO JSON.
CUSTOM_SOURCES = ("pts", "csv", "coco")
DATA_SOURCES = ("synthetic", "300w", "mtfl") + CUSTOM_SOURCES
EVAL_SOURCES = DATA_SOURCES + ("afw",)
FILE_SOURCES = ("csv", "coco")  # their root is the annotation file, not a folder
MTFL_VALIDATION_FACES = 1000  # MTFL's own validation split (docs/model.md, 1.1)


def root_kind(source: str) -> str:
    """What the root of a data source is, in words."""
    return "the annotation file" if source in FILE_SOURCES else "the dataset folder"


@dataclass
class DataConfig:
    """Where training faces come from. ``synthetic`` needs nothing; ``300w`` reads a 300W-layout ``root``
    (train on ``train_subsets``, split off ``validation``, test on ``test_subsets``); ``mtfl`` reads
    MTFL's ``training.txt`` (1,000 validation faces) and tests on ``testing.txt`` (AFLW). ``pts`` (a folder),
    ``csv`` and ``coco`` (the annotation file) read a user's keypoints from ``root``, split off
    ``validation`` and test on ``test_root`` (same format) when given. ``extra_train``: more training
    faces (a keypoint CSV, a COCO JSON or a folder of ``.pts``: e.g. pseudo-labels, `rcn data pseudo-label`;
    or an MTFL folder: its ``training.txt`` faces, as partial labels for a 68-point model), their labels
    weighing ``extra_weight`` in the loss; never validation or test faces."""

    source: str = "synthetic"
    root: str | None = None
    train_subsets: tuple[str, ...] = ("afw", "helen_train")
    test_subsets: tuple[str, ...] = ()
    test_root: str | None = None
    validation: float = 0.1
    synthetic_train: int = 2000
    synthetic_validation: int = 200
    synthetic_test: int = 300
    seed: int = 0
    cache_dir: str | None = None
    on_error: str = "raise"
    extra_train: tuple[str, ...] = ()
    extra_weight: float = 1.0

    def __post_init__(self):
        if self.source not in DATA_SOURCES:
            raise ValueError(f"data.source={self.source!r} is not allowed; allowed: {DATA_SOURCES}")
        if self.source != "synthetic" and not self.root:
            raise ValueError(f"data.source={self.source!r} needs data.root ({root_kind(self.source)})")
        if self.test_root and self.source not in CUSTOM_SOURCES:
            raise ValueError(f"data.test_root is for the sources {CUSTOM_SOURCES}; {self.source!r} has its own test sets")
        for name in ("train_subsets", "test_subsets", "extra_train"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, (list, tuple)):
                what = "annotation files or folders" if name == "extra_train" else "subset names"
                raise ValueError(f"data.{name}={value!r} must be a list of {what}")
            setattr(self, name, tuple(value))
        v = self.validation
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v < 1 or (v >= 1 and v == int(v))):
            raise ValueError(f"data.validation={v!r} must be a fraction in (0, 1) or a whole number of faces")
        for name in ("synthetic_train", "synthetic_validation", "synthetic_test"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"data.{name}={value!r} must be a positive integer")
        if self.on_error not in ("raise", "skip"):
            raise ValueError(f"data.on_error={self.on_error!r} is not allowed; allowed: raise, skip")
        w = self.extra_weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 < w <= 1:
            raise ValueError(f"data.extra_weight={w!r} must be a number in (0, 1]")
        if self.extra_train and self.source == "synthetic":
            raise ValueError("data.extra_train adds real faces to a real data source, not to synthetic faces")
        if self.extra_weight != 1.0 and not self.extra_train:
            raise ValueError(f"data.extra_weight={w!r} weighs the data.extra_train faces, and none are given")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Splits:
    train: FaceSet
    validation: FaceSet
    test: FaceSet | None


def load_faces(source: str, root: str | None = None, num_keypoints: int = 68, subsets=("afw", "helen_train"),
               list_file: str = "testing.txt", faces: int = 300, seed: int = 2, on_error: str = "raise",
               cache_dir: str | None = None, crop_rule: str | None = None, crop_size: int = STAGE_A_SIZE) -> FaceSet:
    """One face set: ``faces`` synthetic faces, 300W ``subsets`` under ``root``, an MTFL ``list_file``,
    AFW's ``anno.mat`` (5 points), or a user's keypoints (``pts`` folder, ``csv`` / ``coco`` file at
    ``root``, cropped by ``crop_rule``, default "points"); real faces cropped ``crop_size`` pixels square
    (`crop.crop_side`)."""
    if source == "synthetic":
        return synthetic_faces(faces, num_keypoints, seed=seed)
    if source not in EVAL_SOURCES:
        raise ValueError(f"data source {source!r} is not allowed; allowed: {EVAL_SOURCES}")
    if not root:
        raise ValueError(f"data source {source!r} needs {root_kind(source)} (--root)")
    if source in CUSTOM_SOURCES:
        loader = {"pts": datasets.load_pts_folder, "csv": datasets.load_keypoint_csv, "coco": datasets.load_coco}
        return loader[source](root, num_keypoints, crop_rule or "points", on_error=on_error, cache_dir=cache_dir,
                              crop_size=crop_size)
    common = dict(on_error=on_error, cache_dir=cache_dir, crop_size=crop_size)
    if source == "300w":
        return datasets.load_300w(root, tuple(subsets), num_keypoints, **common)
    if num_keypoints != 5:
        raise ValueError(f"{source} has 5 keypoints but the model predicts {num_keypoints}")
    if source == "mtfl":
        return datasets.load_mtfl(root, list_file, **common)
    return datasets.load_afw(root, **common)


def extra_source(path: str) -> str:
    """The keypoint format of an ``extra_train`` entry: an MTFL folder (it holds ``training.txt``), a folder
    of ``.pts``, a ``.json`` COCO file or a CSV."""
    p = pathlib.Path(path)
    if p.is_dir():
        return "mtfl" if (p / "training.txt").is_file() else "pts"
    return "coco" if p.suffix.lower() == ".json" else "csv"


def has_partial_labels(data: DataConfig, num_keypoints: int) -> bool:
    """Whether training adds faces labelled only through group means: MTFL's faces for 68 points."""
    return num_keypoints == 68 and any(extra_source(p) == "mtfl" for p in data.extra_train)


def annotated_mean_shape(faces: FaceSet) -> np.ndarray:
    """The mean (K, 2) of the faces' own annotated points, in the crop frame."""
    own = is_annotated(faces.border_codes)[..., None]
    counts = own.sum(0)
    if not counts.all():
        raise ValueError("a mean shape needs every point annotated on at least one face")
    return (np.where(own, faces.keypoints, 0.0).sum(0) / counts).astype(np.float64)


def load_splits(data: DataConfig, num_keypoints: int, crop_rule: str | None = None,
                crop_size: int = STAGE_A_SIZE) -> Splits:
    """Train / validation / test face sets of ``data`` for a model of ``num_keypoints`` (``crop_rule``: the
    keypoint scheme's, for a user's keypoints), with the ``extra_train`` faces added to the training set;
    real faces cropped ``crop_size`` pixels square (`crop.crop_side` of the network's input)."""
    splits = _source_splits(data, num_keypoints, crop_rule, crop_size)
    if not data.extra_train:
        return splits
    common = dict(on_error=data.on_error, cache_dir=data.cache_dir, crop_size=crop_size)
    extras, tested = [], None
    for path in data.extra_train:
        kind = extra_source(path)
        if kind != "mtfl":
            tested = test_images(data) if tested is None else tested
            shared = sorted(datasets.image_files(kind, path) & tested)
            if shared:
                raise ValueError(f"data.extra_train: {path}: {len(shared)} of its images are test images "
                                 f"(e.g. {shared[0]}): never train on the test set's faces")
            faces = load_faces(kind, path, num_keypoints=num_keypoints, crop_rule=crop_rule, **common)
        elif data.source == "mtfl" and pathlib.Path(path).resolve() == pathlib.Path(data.root).resolve():
            raise ValueError(f"data.extra_train: {path} is the data source itself (its validation faces would train)")
        elif num_keypoints == 5:
            faces = datasets.load_mtfl(path, "training.txt", **common)
        elif num_keypoints == 68:
            faces = datasets.load_mtfl_partial68(path, annotated_mean_shape(splits.train), **common)
        else:
            raise ValueError(f"data.extra_train: the MTFL folder {path} has 5 points (partial labels for 68); "
                             f"the model predicts {num_keypoints}")
        extras.append(faces.weighted(data.extra_weight))
    return Splits(FaceSet.concat([splits.train, *extras]), splits.validation, splits.test)


def test_images(data: DataConfig) -> set[pathlib.Path]:
    """The image files of ``data``'s test set (MTFL's testing.txt, 300W's test subsets, a ``test_root``)."""
    if data.source == "mtfl" and (pathlib.Path(data.root) / "testing.txt").is_file():
        return datasets.image_files("mtfl", data.root, list_file="testing.txt")
    if data.source == "300w" and data.test_subsets:
        return datasets.image_files("300w", data.root, data.test_subsets)
    if data.source in CUSTOM_SOURCES and data.test_root:
        return datasets.image_files(data.source, data.test_root)
    return set()


def _source_splits(data: DataConfig, num_keypoints: int, crop_rule: str | None, crop_size: int) -> Splits:
    d, k = data, num_keypoints
    if d.source == "synthetic":
        return Splits(synthetic_faces(d.synthetic_train, k, seed=d.seed),
                      synthetic_faces(d.synthetic_validation, k, seed=d.seed + 1),
                      synthetic_faces(d.synthetic_test, k, seed=d.seed + 2))
    common = dict(num_keypoints=k, on_error=d.on_error, cache_dir=d.cache_dir, crop_size=crop_size)
    if d.source in CUSTOM_SOURCES:
        train, val = load_faces(d.source, d.root, crop_rule=crop_rule, **common).split(d.validation)
        test = load_faces(d.source, d.test_root, crop_rule=crop_rule, **common) if d.test_root else None
        return Splits(train, val, test)
    if d.source == "300w":
        train, val = load_faces("300w", d.root, subsets=d.train_subsets, **common).split(d.validation)
        test = load_faces("300w", d.root, subsets=d.test_subsets, **common) if d.test_subsets else None
        return Splits(train, val, test)
    faces = load_faces("mtfl", d.root, list_file="training.txt", **common)
    train, val = faces.split(MTFL_VALIDATION_FACES if len(faces) > 2 * MTFL_VALIDATION_FACES else d.validation)
    has_test = (pathlib.Path(d.root) / "testing.txt").is_file()
    return Splits(train, val, load_faces("mtfl", d.root, list_file="testing.txt", **common) if has_test else None)
