"""A dataset's layout checked before training (`rcn data check`): faces per subset against the published
counts, and every missing image, unreadable image and bad annotation as one line. Annotations are read;
images are only opened for their size (their header), never decoded, so a check of MTFL's 12,995 images
takes seconds."""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections import Counter

import numpy as np
from PIL import Image, UnidentifiedImageError

from rcn_keras.data.datasets import (SUBSETS_300W, annotation_image, check_points, coco_image_folder, image_beside,
                                    list_pts, outside_remark)
from rcn_keras.data.formats import (DataFormatError, read_afw_anno, read_coco_keypoints, read_keypoint_csv,
                                    read_mtfl_list, read_pts)

# Faces of each subset as published (datasets/*.md say where each comes from).
PUBLISHED_MTFL = {"training.txt": 10_000, "testing.txt": 2_995}
PUBLISHED_MTFL_FOLDERS = {"lfw_5590": 4_151, "net_7876": 5_849, "AFLW": 2_995}
PUBLISHED_300W = {"afw": 337, "helen_train": 2_000, "lfpw_train": 811, "helen_test": 330, "lfpw_test": 224,
                  "ibug": 135}
CHECK_SOURCES = ("mtfl", "300w", "afw", "pts", "csv", "coco")


@dataclasses.dataclass
class SubsetRow:
    """One subset: faces whose image and annotation are fine (``usable``) of those ``listed``, against
    ``published`` (``None``: no published count, a user's own data)."""

    subset: str
    listed: int
    usable: int
    published: int | None = None

    @property
    def status(self) -> str:
        if self.listed == 0:
            return "absent"
        if self.published is None:
            return "ok" if self.usable == self.listed else "problems"
        if self.usable < self.listed:
            return "problems"
        if self.listed < self.published:
            return f"partial ({self.listed:,} of {self.published:,})"
        return "complete" if self.listed == self.published else f"more than published ({self.published:,})"


@dataclasses.dataclass
class CheckReport:
    """What `check_dataset` found: a row per subset, a line per problem and a line per remark (a face
    that loads but whose annotation looks wrong)."""

    source: str
    root: str
    rows: list[SubsetRow]
    problems: list[str]
    remarks: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No missing or unreadable image, no bad annotation (absent or partial subsets are not problems)."""
        return not self.problems and any(r.listed for r in self.rows)

    def table(self) -> str:
        lines = [f"{'subset':<22} {'listed':>8} {'usable':>8}  status"]
        lines += [f"{r.subset:<22} {r.listed:>8,} {r.usable:>8,}  {r.status}" for r in self.rows]
        return "\n".join(lines)


def image_size(path: pathlib.Path) -> tuple[int, int]:
    """(width, height) from an image file's header, without decoding its pixels; a `DataFormatError`
    naming the file when it is missing or not an image."""
    if not path.is_file():
        raise DataFormatError(path, "image file not found")
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataFormatError(path, f"not a readable image ({exc})") from None


class _Tally:
    """Counts per subset and the problem lines of a check."""

    def __init__(self):
        self.listed, self.usable, self.problems, self.remarks = Counter(), Counter(), [], []

    def face(self, subsets: str | tuple[str, ...], check) -> None:
        """Count one face of ``subsets`` (a name, or several: a list and its folder); ``check()`` raises a
        `DataFormatError` for a bad one and returns a remark (or ``None``)."""
        subsets = (subsets,) if isinstance(subsets, str) else subsets
        for s in subsets:
            self.listed[s] += 1
        try:
            remark = check()
        except DataFormatError as exc:
            self.problems.append(str(exc))
        else:
            if remark:
                self.remarks.append(remark)
            for s in subsets:
                self.usable[s] += 1

    def rows(self, published: dict[str, int] | None = None, order=None) -> list[SubsetRow]:
        names = list(order or []) + [s for s in self.listed if s not in (order or [])]
        return [SubsetRow(s, self.listed[s], self.usable[s], (published or {}).get(s)) for s in names]


def _face_check(image: pathlib.Path, source: str, edge: np.ndarray, has_box: bool = False):
    def check():
        w, h = image_size(image)
        check_points(source, edge, w, h, has_box)
        return outside_remark(source, edge, w, h)
    return check


def check_mtfl(root: pathlib.Path) -> CheckReport:
    """MTFL: ``training.txt`` and ``testing.txt`` (AFLW) and the images they name, per list and per folder."""
    tally, problems = _Tally(), []
    for list_file in PUBLISHED_MTFL:
        path = root / list_file
        bad_lines: list[str] = []
        try:
            records = read_mtfl_list(path, bad_lines)
        except DataFormatError as exc:
            problems.append(str(exc))
            continue
        problems.extend(bad_lines)
        tally.listed[list_file] += len(bad_lines)
        for rec in records:
            folder = "  " + (rec.image.split("/", 1)[0] if "/" in rec.image else ".") + "/"
            tally.face((list_file, folder), _face_check(root / rec.image, f"{path}:{rec.line}", rec.keypoints + 0.5))
    published = {**PUBLISHED_MTFL, **{f"  {k}/": v for k, v in PUBLISHED_MTFL_FOLDERS.items()}}
    return CheckReport("mtfl", str(root), tally.rows(published, PUBLISHED_MTFL), problems + tally.problems,
                       tally.remarks)


def check_300w(root: pathlib.Path) -> CheckReport:
    """300W folders (``afw``, ``helen/trainset``, ...): `.pts` files and their images; a subset that is
    absent or holds fewer faces than published is said, not counted as a problem."""
    tally, problems = _Tally(), []
    for subset, rel in SUBSETS_300W.items():
        folder = root / rel
        try:
            files = list_pts(folder)
        except DataFormatError:  # absent (300W copies are often partial): said in the table
            continue
        for pts in files:
            def check(pts=pts):
                w, h = image_size(image_beside(pts))
                check_points(pts, read_pts(pts, n_points=68) - 0.5, w, h)
            tally.face(subset, check)
    if not any(tally.listed.values()):
        problems.append(f"{root}: no 300W subset folder (looked for {', '.join(SUBSETS_300W.values())})")
    return CheckReport("300w", str(root), tally.rows(PUBLISHED_300W, PUBLISHED_300W), problems + tally.problems)


def check_afw(root: pathlib.Path) -> CheckReport:
    """AFW's ``anno.mat``: faces whose 6 points are all given (the others are left out by the loader,
    counted here as ``listed`` only) and their images."""
    tally, problems = _Tally(), []
    try:
        faces = read_afw_anno(root / "anno.mat")
    except DataFormatError as exc:
        return CheckReport("afw", str(root), [], [str(exc)])
    for face in faces:
        if not np.all(np.isfinite(face.points6)):
            tally.listed["afw (NaN points, left out)"] += 1
            continue
        tally.face("afw", _face_check(root / face.image, f"{root / 'anno.mat'} ({face.image})", face.points5 + 0.5))
    return CheckReport("afw", str(root), tally.rows(), problems + tally.problems, tally.remarks)


def check_annotations(source: str, path: pathlib.Path) -> CheckReport:
    """A user's keypoints: a folder of `.pts` (with images beside them), a keypoint CSV or a COCO JSON."""
    tally = _Tally()
    try:
        if source == "pts":
            for pts in list_pts(path, recursive=True):
                group = pts.parent.relative_to(path).as_posix() if pts.parent != path else "."

                def check(pts=pts):
                    w, h = image_size(image_beside(pts))
                    edge = read_pts(pts) - 0.5
                    check_points(pts, edge, w, h)
                    return outside_remark(pts, edge, w, h)
                tally.face(group, check)
        else:
            if source == "csv":
                anns, base = read_keypoint_csv(path), path.parent
            else:
                anns = read_coco_keypoints(path)[0]
                base = coco_image_folder(path, anns)
            for ann in anns:
                def check(ann=ann):
                    w, h = image_size(annotation_image(base, ann))
                    check_points(ann.where, ann.keypoints[ann.annotated], w, h, ann.box is not None)
                    return outside_remark(ann.where, ann.keypoints[ann.annotated], w, h)
                tally.face(path.name, check)
    except DataFormatError as exc:
        return CheckReport(source, str(path), tally.rows(), tally.problems + [str(exc)], tally.remarks)
    return CheckReport(source, str(path), tally.rows(), tally.problems, tally.remarks)


def check_dataset(source: str, root: str | os.PathLike) -> CheckReport:
    """Check the dataset ``source`` (one of `CHECK_SOURCES`) at ``root`` (a folder; the annotation file
    for csv and coco)."""
    if source not in CHECK_SOURCES:
        raise ValueError(f"data source {source!r} cannot be checked; allowed: {', '.join(CHECK_SOURCES)}")
    root = pathlib.Path(root)
    if source in ("csv", "coco"):
        if not root.is_file():
            raise DataFormatError(root, "annotation file not found")
        return check_annotations(source, root)
    if not root.is_dir():
        raise DataFormatError(root, "dataset folder not found")
    if source == "pts":
        return check_annotations(source, root)
    return {"mtfl": check_mtfl, "300w": check_300w, "afw": check_afw}[source](root)
