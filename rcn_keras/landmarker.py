"""`Landmarker`: a keypoint map network together with how it is used, in one `.keras` file.

keras-hub style task: the *backbone* is a SumNet / RCN / joint map model (grey 80x80 crop ->
pre-softmax maps); the task adds the read-out (maps -> keypoints, confidence) and the input convention
(which face-box formats it accepts and how each maps to the crop). `predict` takes photos or crops with
optional face boxes and returns keypoints in image pixels; `export` writes SavedModel / TFLite.

Importing this module registers every custom Keras object of the package for `.keras` loading.
"""

from __future__ import annotations

import json
import os
import pathlib
import zipfile
from typing import Sequence

import keras
import numpy as np

from rcn_keras import inference, losses, metrics  # noqa: F401  (losses, metrics: registered for loading)
from rcn_keras.boxes import BOX_FORMAT_NAMES, Box, BoxFormat, default_box_formats, pick_box_format
from rcn_keras.detection.base import Detector
from rcn_keras.detection.registry import make_detector
from rcn_keras.keypoints import as_scheme
from rcn_keras.models.config import ModelConfig
from rcn_keras.models.denoising import build_joint_model
from rcn_keras.models.head import KeypointReadout, as_map_model, input_side, mirrored_readout
from rcn_keras.models.label_offsets import LabelOffsets, as_label_offsets
from rcn_keras.models.shape_prior import ShapePrior
from rcn_keras.models.layers import PACKAGE
from rcn_keras.models.registry import build_model
from rcn_keras.presets import get_preset

MIXED_POLICIES = ("mixed_bfloat16", "mixed_float16", "bfloat16", "float16")


def _float32_config(config):
    """A model config with every mixed / half dtype policy replaced by float32 (recursively)."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" and config.get("config", {}).get("name") in MIXED_POLICIES:
            return {**config, "config": {**config["config"], "name": "float32"}}
        return {k: _float32_config(v) for k, v in config.items()}
    if isinstance(config, list):
        return [_float32_config(v) for v in config]
    if isinstance(config, str) and config in MIXED_POLICIES:
        return "float32"
    return config


def float32_copy(model: keras.Model) -> keras.Model:
    """The same network computing in float32 (weights copied, no optimizer state): how models trained
    in mixed precision are saved, so that they load and predict in float32 everywhere."""
    copy = model.__class__.from_config(_float32_config(model.get_config()))
    copy.set_weights([np.asarray(keras.ops.convert_to_numpy(w), np.float32) for w in model.weights])
    return copy


@keras.saving.register_keras_serializable(package=PACKAGE)
class Landmarker(keras.Model):
    """A map model (``backbone``) plus its read-out and input convention.

    Calling it on crops (B, 80, 80, 1) of raw grey intensities returns ``{"presoftmax", "keypoints",
    "confidence"}`` with keypoints in [0, 1] of the crop. ``readout``: one of `READOUTS`.
    ``box_formats``: name -> (scale, shift x, shift y) of the face boxes it accepts (defaults for its
    keypoint count); ``default_box_format`` is used when a caller names none. ``preset``: the preset it
    was built from (information only). ``detector``: how `predict` finds faces in images given without
    a box: ``"auto"`` (the best installed detector), a detector name or `Detector`, or ``None`` /
    ``"none"`` (each image is one face crop, the default). Not saved with the model.
    ``keypoints``: its `KeypointScheme` (or the dict / name; default: the paper's scheme for K).
    ``network``: the `ModelConfig` (or dict) the backbone was built from, when known (fine-tuning
    rebuilds it for another K). ``shape_prior``: a `ShapePrior` (statistics of the training shapes)
    whose fit to the maps gives the keypoints instead of the read-out alone (the confidence stays the
    read-out's); saved with the model. ``label_offsets``: `LabelOffsets` (or their dict) added to the
    keypoints, measured on the training faces (`rcn_keras.evaluation.calibration`); saved with the model.
    """

    def __init__(self, backbone: keras.Model, readout: str = "argmax", box_formats: dict | None = None,
                 default_box_format: str = "landmarks", preset: str | None = None,
                 detector: str | Detector | None = None, keypoints=None, network=None,
                 shape_prior: ShapePrior | None = None, label_offsets: LabelOffsets | dict | None = None,
                 **kwargs):
        network = network if network is not None else getattr(backbone, "rcn_config", None)
        backbone = as_map_model(backbone)
        k = backbone.output.shape[-1]
        scheme = as_scheme(keypoints, k)
        formats = {str(n): tuple(float(v) for v in f)
                   for n, f in (box_formats or default_box_formats(k, scheme.is_standard)).items()}
        if default_box_format not in formats:
            raise ValueError(f"default_box_format={default_box_format!r} is not one of its box formats "
                             f"{sorted(formats)}")
        # === Layers ===
        self.backbone = backbone
        self.readout_layer = KeypointReadout(readout, name="readout")
        if shape_prior is not None and shape_prior.num_keypoints != k:
            raise ValueError(f"the shape prior has {shape_prior.num_keypoints} keypoints, the model {k}")
        self.shape_prior = shape_prior
        label_offsets = as_label_offsets(label_offsets)
        if label_offsets is not None and label_offsets.num_keypoints != k:
            raise ValueError(f"the label offsets have {label_offsets.num_keypoints} keypoints, the model {k}")
        self.label_offsets = label_offsets
        # === Functional model ===
        image = keras.Input(tuple(backbone.input.shape[1:]), name="image")
        maps = backbone(image)
        outputs = {"presoftmax": maps, **self.readout_layer(maps)}
        if shape_prior is not None:
            outputs["keypoints"] = shape_prior(maps)
        if label_offsets is not None:
            outputs["keypoints"] = label_offsets.apply(outputs["keypoints"])
        kwargs.setdefault("name", f"{backbone.name}_landmarker")
        super().__init__(inputs=image, outputs=outputs, **kwargs)
        # === Config ===
        self.readout = readout
        self.box_formats = formats
        self.default_box_format = default_box_format
        self.preset = preset
        self.detector = make_detector(detector)
        self.keypoints = scheme
        self.network = ModelConfig.from_dict(network) if isinstance(network, dict) else network

    @property
    def num_keypoints(self) -> int:
        return int(self.backbone.output.shape[-1])

    @property
    def input_size(self) -> int:
        """Side of the grey crops the network takes: 80, or 160 for a network that sees more pixels."""
        return input_side(self.backbone)

    def network_config(self) -> ModelConfig:
        """The `ModelConfig` of the backbone: as built, else its preset's network; a ValueError when
        neither is known (files written before either was saved)."""
        if isinstance(self.network, ModelConfig):
            return self.network
        if self.preset:
            try:
                model = get_preset(self.preset).model
            except ValueError:
                model = None
            if isinstance(model, ModelConfig) and model.num_keypoints == self.num_keypoints:
                return model
        raise ValueError(f"the network configuration of {self.name!r} is not known (saved without it, preset "
                         f"{self.preset!r}): fine-tune from a shipped model or a model trained with this version")

    def _same(self, backbone=None, readout=None, **kwargs) -> "Landmarker":
        """A Landmarker like this one with another backbone, read-out, shape prior or label offsets."""
        kwargs.setdefault("shape_prior", self.shape_prior)
        kwargs.setdefault("label_offsets", self.label_offsets)
        return Landmarker(backbone or self.backbone, readout or self.readout, self.box_formats,
                          self.default_box_format, self.preset, self.detector, self.keypoints, self.network,
                          **kwargs)

    def get_config(self) -> dict:
        return {"name": self.name, "trainable": self.trainable,
                "backbone": keras.saving.serialize_keras_object(self.backbone),
                "readout": self.readout, "box_formats": {n: list(f) for n, f in self.box_formats.items()},
                "default_box_format": self.default_box_format, "preset": self.preset,
                "keypoints": self.keypoints.to_dict(),
                "network": self.network.to_dict() if isinstance(self.network, ModelConfig) else None,
                "shape_prior": (keras.saving.serialize_keras_object(self.shape_prior)
                                if self.shape_prior is not None else None),
                "label_offsets": self.label_offsets.to_dict() if self.label_offsets is not None else None}

    @classmethod
    def from_config(cls, config: dict) -> "Landmarker":
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        if config.get("shape_prior") is not None:
            config["shape_prior"] = keras.saving.deserialize_keras_object(config["shape_prior"])
        return cls(**config)

    # --- construction -------------------------------------------------------------------------

    @classmethod
    def from_preset(cls, name: str, detector: str | Detector | None = None, **overrides) -> "Landmarker":
        """A shipped model by name (``"rcn-300w"``: trained weights), a preset's untrained network
        (``"rcn_mtfl"``, ``overrides`` = `ModelConfig` fields), or a `.keras` file; ``detector`` as in
        the constructor (``"auto"`` to find faces in photos)."""
        if pathlib.Path(name).suffix == ".keras" or os.path.exists(name):
            return load_landmarker(name).with_detector(detector)
        preset = get_preset(name)
        if preset.weights:
            if overrides:
                raise ValueError(f"{name!r} is a trained model: its network cannot be changed "
                                 f"({sorted(overrides)})")
            return load_landmarker(name).with_detector(detector)
        if preset.is_denoiser:
            raise ValueError(f"preset {name!r} is a denoiser (keypoint maps in, not images): build it with "
                             f"rcn_keras.build_denoiser, or join it to an RCN with load_landmarker('joint:RCN,DN')")
        return cls(build_model(name, **overrides), readout=preset.readout, box_formats=preset.box_formats,
                   preset=name, detector=detector)

    def with_readout(self, readout: str) -> "Landmarker":
        """The same network (shared weights) with another read-out."""
        return self._same(readout=readout)

    def with_shape_prior(self, prior: ShapePrior | None) -> "Landmarker":
        """The same network (shared weights) with ``prior`` fitted to its maps (``None``: without)."""
        return self._same(shape_prior=prior)

    def with_label_offsets(self, offsets: LabelOffsets | None) -> "Landmarker":
        """The same network (shared weights) with ``offsets`` added to its keypoints (``None``: without)."""
        return self._same(label_offsets=offsets)

    def with_detector(self, detector: str | Detector | None) -> "Landmarker":
        """This model (itself, not a copy) finding faces with ``detector`` (see the constructor)."""
        self.detector = make_detector(detector)
        return self

    def to_float32(self) -> "Landmarker":
        """A float32 copy (see `float32_copy`)."""
        return self._same(float32_copy(self.backbone), name=self.name)

    def box_format(self, name: str | None = None) -> BoxFormat:
        """The box format ``name`` (default: ``default_box_format``): a face detector's name gives its
        calibration for this model's crops (`rcn_keras.detection`; for a scheme of the user's own, the
        one measured when it was trained), other names the model's own."""
        return pick_box_format(name, self.box_formats, self.default_box_format, self.num_keypoints,
                               self.keypoints.is_standard)

    # --- inference ----------------------------------------------------------------------------

    def _head(self, readout: str | None) -> KeypointReadout:
        return self.readout_layer if readout in (None, self.readout) else KeypointReadout(readout)

    def mirror_permutation(self, flip: bool) -> tuple[int, ...] | None:
        """The point permutation of flip averaging (its keypoint scheme's mirror), or ``None`` when
        ``flip`` is false; a ValueError when the scheme has no mirror."""
        if not flip:
            return None
        if self.keypoints.flip is None:
            raise ValueError(f"flip averaging needs a keypoint scheme with a mirror permutation; "
                             f"{self.keypoints.name!r} of {self.name!r} has none")
        return tuple(self.keypoints.flip)

    def _inference_fn(self, readout: str | None, flip: bool = False):
        """Crops -> keypoints and confidence as one traced graph per read-out and flip setting (op-by-op
        eager calls cost a small network more than the network itself)."""
        import tensorflow as tf

        cache = self.__dict__.setdefault("_inference_fns", {})
        key = (readout or self.readout, bool(flip))
        if key not in cache:
            head, perm = self._head(readout), self.mirror_permutation(flip)

            side = self.input_size

            @tf.function(input_signature=[tf.TensorSpec([None, side, side, 1], tf.float32)])
            def infer(crops):
                out = mirrored_readout(self.backbone, head, crops, perm, self.shape_prior, self.label_offsets)
                return out["keypoints"], out["confidence"]

            cache[key] = infer
        return cache[key]

    def predict_crops(self, crops, batch_size: int = 64, readout: str | None = None,
                      flip: bool = False) -> dict[str, np.ndarray]:
        """Keypoints (N, K, 2) in [0, 1] of the crop and confidence (N, K) for grey crops of `input_size`.
        ``flip``: average with the mirrored crops (flip test-time averaging: about 0.15 NME points
        better on 300W validation faces for twice the network time)."""
        crops = inference.as_crops(crops, self.input_size)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
        infer = self._inference_fn(readout, flip)
        keypoints, confidence = [], []
        for start in range(0, len(crops), batch_size):
            points, peak = infer(crops[start:start + batch_size])
            keypoints.append(points.numpy())
            confidence.append(peak.numpy())
        if not keypoints:
            return {"keypoints": np.zeros((0, self.num_keypoints, 2), np.float32),
                    "confidence": np.zeros((0, self.num_keypoints), np.float32)}
        return {"keypoints": np.concatenate(keypoints), "confidence": np.concatenate(confidence)}

    def predict(self, images, boxes: Sequence[Box | None] | dict | None = None, box_format: str | None = None,
                readout: str | None = None, batch_size: int = 64, on_error: str = "raise",
                detector: str | Detector | None = None, max_faces: int | None = None, level: bool = True,
                progress=None, flip: bool = False, on_result=None, preview_side: int | None = None,
                align=None, pose: bool = False, **kwargs) -> list[dict]:
        """Keypoints of every face in each image: one dict per image, ``{"image", "width", "height",
        "faces": [...]}``; each face ``{"box", "score", "keypoints" (K, 2), "confidence" (K,), "rect",
        "angle", "crop", "crop_keypoints"}``. Keypoints are in pixels of the original image (0-based,
        integer = pixel centre); ``rect`` is the crop square (x, y, side), rotated by ``angle`` degrees.

        ``images``: a path, an array or a list of them; arrays are grey (H, W) / (H, W, 1), RGB or RGBA,
        read by their dtype: uint8 0-255, uint16 0-65535, float 0-1 (other dtypes and out-of-range floats
        are refused). Faces come from, in order: ``boxes`` (per image one (x, y, w, h), a list of them (one
        per face) or ``None``, or a dict of `read_boxes_file`; ``box_format`` says what they are,
        default ``default_box_format``), else the ``detector`` (``None``: the model's
        own, ``self.detector``; ``"auto"``, a name or a `Detector`; at most ``max_faces`` per image, most
        confident first; ``level`` rotates each crop by the roll of the eyes a detector gives), else the
        whole image is one face crop (``detector="none"``). An image where the detector finds no face
        has ``"faces": []``. ``on_error="skip"``: an unreadable image gives ``{"image", "error"}`` and
        the others go on. ``progress``: called with (images done, images) as it goes. ``flip``: flip
        test-time averaging (`predict_crops`). ``on_result(result, preview)``: called as each image is
        done, with its pixels as decoded (``(rgb, original pixels per pixel)``, at most ``preview_side``
        long): what `rcn predict` draws its overlays on without decoding the photo again. Large JPEG
        photos are decoded at a reduced DCT scale, fine enough for every face (`inference.prepare_photo`).
        ``align``: add each face's aligned crop (``"aligned"``, uint8 RGB): a crop size (InsightFace's
        5-point template), a template name or an `align.Template` (`rcn_keras.align`). ``pose``: add each
        face's head pose (``"pose"``: yaw, pitch, roll in degrees and the fit's error; `rcn_keras.pose`).
        """
        if kwargs:
            raise TypeError(f"Landmarker.predict takes images and boxes; unexpected {sorted(kwargs)} "
                            f"(use predict_crops for {self.input_size}x{self.input_size} crops)")
        self.mirror_permutation(flip)  # a scheme without a mirror fails before any image is read
        given_format = self.box_format(box_format)
        finder = self.detector if detector is None else make_detector(detector)
        found_format = self.box_format(finder.name) if finder is not None else None
        return inference.predict_images(lambda crops: self.predict_crops(crops, batch_size, readout, flip), images,
                                        boxes, given_format, finder, found_format, batch_size, on_error, level,
                                        max_faces, progress, on_result, preview_side, align, pose, self.input_size)

    # --- export -------------------------------------------------------------------------------

    def export(self, filepath, format: str = "saved_model", readout: str | None = None,
               batch_size: int | None = None, quantize: str = "none", representative=None, overwrite: bool = False,
               **kwargs):
        """Write a SavedModel (``"saved_model"``, also ``"tf_saved_model"``), a TFLite file (``"tflite"``,
        a fixed batch of ``batch_size``, default 1; ``quantize`` "float16" or "int8" with
        ``representative`` crops) or an ONNX file (``"onnx"``) with this read-out (or ``readout``) and shape
        prior; an existing ``filepath`` that is not an earlier export of the format only with ``overwrite``."""
        from rcn_keras import export as exporting

        if kwargs:
            raise TypeError(f"unexpected export options {sorted(kwargs)}")
        fmt = "saved_model" if format == "tf_saved_model" else format
        return exporting.export_model(self, filepath, fmt, readout or self.readout, batch_size, quantize,
                                      representative, overwrite)


def _wrap(model: keras.Model, source: str) -> Landmarker:
    """A loaded model as a `Landmarker`: itself, or a bare / read-out map model with the arg-max
    read-out and the default box formats (files written before the `Landmarker` existed)."""
    if isinstance(model, Landmarker):
        return model
    try:
        maps = as_map_model(model)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None
    return Landmarker(maps, "argmax")


def load_landmarker(spec: str | os.PathLike) -> Landmarker:
    """A trained `Landmarker`: a `.keras` file (safe mode: no arbitrary code), a shipped model name, or
    ``"joint:RCN,DENOISER"`` (two of those: the joint RCN + denoiser model with the RCN's read-out and
    box formats, not its shape prior or label offsets: those were fitted to the RCN's own maps). Errors are
    one-line `ValueError`s / `FileNotFoundError`s that name the file."""
    text = str(spec)
    if text.startswith("joint:"):
        parts = [p for p in text[len("joint:"):].split(",") if p]
        if len(parts) != 2:
            raise ValueError(f"joint model spec must be 'joint:RCN_MODEL,DENOISER_MODEL', got {text!r}")
        rcn = load_landmarker(parts[0])
        denoiser = _load_keras_file(pathlib.Path(parts[1])) if os.path.exists(parts[1]) else \
            load_landmarker(parts[1]).backbone
        return Landmarker(build_joint_model(rcn.backbone, denoiser), rcn.readout, rcn.box_formats,
                          rcn.default_box_format, name="joint_landmarker")
    path = pathlib.Path(text)
    if not path.exists():
        try:
            preset = get_preset(text)
        except ValueError:
            raise FileNotFoundError(f"model not found: {text} (neither a file nor a shipped model name)") from None
        if not preset.weights:
            raise ValueError(f"{text!r} is a preset without trained weights: train it (rcn train --preset {text}) "
                             f"or build an untrained one with Landmarker.from_preset({text!r})")
        path = preset.weights_path
    return _wrap(_load_keras_file(path), str(path))


def saved_landmarker_info(path: str | os.PathLike) -> dict | None:
    """``{"preset", "keypoints"}`` (the run's preset name and keypoint scheme dict) of a `Landmarker` saved in
    the `.keras` file ``path``, read from its archive without building it; ``None`` for anything else."""
    try:
        with zipfile.ZipFile(path) as archive:
            saved = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    config = saved.get("config") if isinstance(saved, dict) and saved.get("class_name") == "Landmarker" else None
    if not isinstance(config, dict) or not isinstance(config.get("keypoints"), dict):
        return None
    return {"preset": config.get("preset"), "keypoints": config["keypoints"]}


def _load_keras_file(path: pathlib.Path) -> keras.Model:
    if path.is_dir() or path.suffix != ".keras":
        raise ValueError(f"{path}: not a .keras model file")
    if not path.is_file():
        raise FileNotFoundError(f"model not found: {path}")
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # keras raises many types for bad archives; report them as one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "File not found" in first or "zip" in first.lower():
            first = "not a .keras archive (truncated, or another kind of file)"
        raise ValueError(f"{path}: cannot load model ({first[:300]})") from None
    if not isinstance(model, keras.Model):
        raise ValueError(f"{path}: holds a {type(model).__name__}, not a model")
    return model


__all__ = ["BOX_FORMAT_NAMES", "Landmarker", "float32_copy", "load_landmarker", "saved_landmarker_info"]
