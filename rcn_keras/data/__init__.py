"""Datasets, preprocessing, augmentation and tf.data pipelines."""

from rcn_keras.data.augment import AugmentConfig, flip_permutation
from rcn_keras.data.cache import load_faceset, save_faceset
from rcn_keras.data.datasets import GROUPS_300W, SUBSETS_300W, load_300w, load_afw, load_mtfl
from rcn_keras.data.faceset import FaceSet
from rcn_keras.data.formats import (
    AFWFace,
    DataFormatError,
    MTFLRecord,
    afw5_from_68,
    load_image,
    read_afw_anno,
    read_mtfl_list,
    read_pts,
    write_pts,
)
from rcn_keras.data.pipeline import make_dataset
from rcn_keras.data.synthetic import synthetic_faces

__all__ = [
    "AFWFace", "AugmentConfig", "DataFormatError", "FaceSet", "GROUPS_300W", "MTFLRecord", "SUBSETS_300W",
    "afw5_from_68", "flip_permutation", "load_300w", "load_afw", "load_faceset", "load_image", "load_mtfl",
    "make_dataset", "read_afw_anno", "read_mtfl_list", "read_pts", "save_faceset", "synthetic_faces", "write_pts",
]
