"""Export a model as a SavedModel whose serving signature takes raw grey 80x80 crops (any batch size)
and returns keypoints and confidence, and convert it to TFLite (float32, float16 weights, or int8
post-training quantisation calibrated on representative faces) or ONNX. Outputs are written atomically;
`rcn_keras.runtimes` runs the files."""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile
from typing import TYPE_CHECKING

from rcn_keras.errors import first_line
from rcn_keras.files import atomic_folder, atomic_write_bytes, check_output
from rcn_keras.grid import MAP_SIZE

if TYPE_CHECKING:
    import keras

FORMATS = ("saved_model", "tflite", "onnx")  # read by the command line before TensorFlow is imported
QUANTIZATIONS = ("none", "float16", "int8")  # TFLite only
# Ops left in float32 in int8 files: the contrast normalisation (a division by the local deviation), the
# read-out (exponentials, sums, the expectation) and the shape prior need the range; the convolutions are
# quantised. Every other op (a reshape, tile, slice, concatenation or pooling: no arithmetic that needs the
# range) is int8 where its input is and float where its input is (`_float_nodes`): the backbone's nearest
# upsampling stays int8 between quantised convolutions, the shape prior's re-orderings stay float.
FLOAT_OPS = ("DIV", "SQRT", "SQUARED_DIFFERENCE", "MEAN", "MAXIMUM", "ADD", "SUB", "MUL", "EXP", "SUM",
             "REDUCE_MAX", "ARG_MAX", "BATCH_MATMUL", "FULLY_CONNECTED", "FLOOR_DIV", "FLOOR_MOD", "NEG",
             "SELECT_V2", "GREATER")
QUANTIZED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")
ONNX_OPSET = 17
# What a SavedModel folder holds: a folder with only these names is an earlier export, replaced whole.
SAVED_MODEL_ENTRIES = {"saved_model.pb", "variables", "assets", "fingerprint.pb", "keras_metadata.pb"}


def is_saved_model(path: pathlib.Path) -> bool:
    """A folder holding a SavedModel and nothing else."""
    names = {p.name for p in path.iterdir()}
    return "saved_model.pb" in names and names <= SAVED_MODEL_ENTRIES


def is_tflite(path: pathlib.Path) -> bool:
    """A TFLite flatbuffer (file identifier "TFL3")."""
    with open(path, "rb") as f:
        return f.read(8)[4:8] == b"TFL3"


def is_onnx(path: pathlib.Path) -> bool:
    """An ONNX model file (a ModelProto with a graph)."""
    try:
        import onnx

        return len(onnx.load(str(path), load_external_data=False).graph.node) > 0
    except Exception:  # noqa: BLE001  (anything that does not parse is not an ONNX model)
        return False


def check_export_path(path: str | os.PathLike, format: str, overwrite: bool = False) -> pathlib.Path:
    """`check_output` for an export of ``format``: a new path, or an earlier export of the same format (any
    file or folder with ``overwrite``). Returns the path to write."""
    kind, what, ours = {"saved_model": ("folder", "SavedModel", is_saved_model),
                        "tflite": ("file", "TFLite model", is_tflite), "onnx": ("file", "ONNX model", is_onnx)}[format]
    return check_output(path, kind, what, ours, overwrite=overwrite)


def _write_error(path, exc: Exception) -> OSError:
    """A TensorFlow write failure (full disk, no permission) as one line naming the output."""
    hint = "; free some space or choose another --out" if "space" in str(exc).lower() else ""
    return OSError(f"{path}: could not write the export ({first_line(exc)}){hint}")


def _readout_of(model: keras.Model, readout: str | None) -> str:
    """``readout``, else the model's own (a `Landmarker`'s), else arg-max."""
    return readout or getattr(model, "readout", None) or "argmax"


def export_saved_model(model: keras.Model, path: str | os.PathLike, readout: str | None = None,
                       batch_size: int | None = None, overwrite: bool = False) -> pathlib.Path:
    """SavedModel with endpoints ``serve`` (image -> {"keypoints": (B, K, 2) in [0, 1] of the crop,
    "confidence": (B, K) peak probability}) and ``presoftmax`` (image -> (B, S, S, K) maps: S = 80, or 40 for
    a network whose maps are not upsampled).

    ``image`` is float32 (B, 80, 80, 1) raw grey intensities (160 for a network of a 160 input), B any size unless ``batch_size`` fixes
    it; it loads with plain TensorFlow. ``model``: a `Landmarker` (its read-out unless ``readout``, and
    its shape prior and label offsets) or a map model (arg-max unless ``readout``).
    """
    import tensorflow as tf

    from rcn_keras.models.head import as_map_model, input_side, with_readout

    path = check_export_path(path, "saved_model", overwrite)
    infer = with_readout(as_map_model(model), _readout_of(model, readout), getattr(model, "shape_prior", None),
                         getattr(model, "label_offsets", None))
    try:
        with atomic_folder(path) as tmp:
            _write_saved_model(infer, tmp, batch_size, input_side(model))
    except tf.errors.OpError as exc:
        raise _write_error(path, exc) from None
    return pathlib.Path(path)


def _write_saved_model(infer, folder: pathlib.Path, batch_size: int | None, side: int = MAP_SIZE) -> None:
    """The ``serve`` and ``presoftmax`` endpoints of ``infer`` (crops ``side`` pixels square) written as a
    SavedModel into ``folder``."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(infer)
    spec = [tf.TensorSpec([batch_size, side, side, 1], tf.float32, name="image")]

    def serve(image):
        out = infer(image, training=False)
        return {"keypoints": out["keypoints"], "confidence": out["confidence"]}

    archive.add_endpoint("serve", serve, input_signature=spec)
    archive.add_endpoint("presoftmax", lambda image: infer(image, training=False)["presoftmax"],
                         input_signature=spec)
    archive.write_out(str(folder), verbose=False)


@contextlib.contextmanager
def _quiet_converter():
    """The TFLite converter's C++ log lines and the interpreter's deprecation warning kept off the screen
    (unless TensorFlow's log level asks for them: ``rcn --verbose``)."""
    import warnings

    from rcn_keras.runtime import quiet_stderr

    with quiet_stderr(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def export_tflite(model: keras.Model, path: str | os.PathLike, readout: str | None = None,
                  batch_size: int = 1, quantize: str = "none", representative=None,
                  overwrite: bool = False) -> pathlib.Path:
    """TFLite flatbuffer for a **fixed** batch size, with the signature "serve" (image -> keypoints,
    confidence). A fixed batch lets TFLite's default XNNPack delegate run it (with a dynamic batch the
    delegate fails to prepare). ``quantize``: "none" (float32), "float16" (half-size weights, float
    compute) or "int8" (weights and activations, post-training; ``representative``: raw grey crops
    (N, 80, 80, 1), or the network's input side, to calibrate the activation ranges on, a few hundred training faces). Input and
    outputs stay float32, and the read-out (the exponentials of the softmax) stays in float."""
    import numpy as np
    import tensorflow as tf

    from rcn_keras.models.head import input_side

    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize={quantize!r} is not allowed; allowed: {', '.join(QUANTIZATIONS)}")
    path = check_export_path(path, "tflite", overwrite)
    if quantize == "int8":
        if representative is None or len(representative) == 0:
            raise ValueError("int8 quantisation needs representative faces (grey crops of training faces)")
        side = input_side(model)
        representative = np.asarray(representative, np.float32).reshape(-1, side, side, 1)
    with tempfile.TemporaryDirectory() as tmp:
        sm = export_saved_model(model, pathlib.Path(tmp) / "sm", _readout_of(model, readout), batch_size=batch_size)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(sm), signature_keys=["serve"])
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize != "int8":
            with _quiet_converter():
                flatbuffer = converter.convert()
        else:
            def batches():
                for start in range(0, len(representative) - batch_size + 1, batch_size):
                    yield [representative[start:start + batch_size]]

            converter.representative_dataset = batches
            # Selective quantisation (TensorFlow's documented route): FLOAT_OPS and the ops fed by them in float.
            options = tf.lite.experimental.QuantizationDebugOptions
            with _quiet_converter():
                debugger = tf.lite.experimental.QuantizationDebugger(
                    converter=converter, debug_dataset=batches,
                    debug_options=options(denylisted_ops=list(FLOAT_OPS)))
                calibrated = pathlib.Path(tmp) / "calibrated.tflite"
                calibrated.write_bytes(debugger.calibrated_model)
                debugger.options = options(denylisted_ops=list(FLOAT_OPS), denylisted_nodes=_float_nodes(calibrated))
                flatbuffer = debugger.get_nondebug_quantized_model()
    atomic_write_bytes(path, flatbuffer)
    return pathlib.Path(path)


def _float_nodes(calibrated: pathlib.Path) -> list[str]:
    """The output tensors of the ops of a calibrated float TFLite file that stay float in its int8 file:
    FLOAT_OPS, and any op but QUANTIZED_OPS with an input from the image or from a float op."""
    from rcn_keras.runtimes import tflite_interpreter

    interpreter = tflite_interpreter(str(calibrated), threads=1)
    tensors = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    floating = {d["index"] for d in interpreter.get_input_details()}  # tensors that hold float values
    nodes = []
    # The ops come in execution order, so an op's inputs are classified before it; the op list is the
    # same private call the quantisation debugger itself reads.
    for op in interpreter._get_ops_details():
        is_float = op["op_name"] in FLOAT_OPS or (op["op_name"] not in QUANTIZED_OPS
                                                  and any(i in floating for i in op["inputs"]))
        if is_float:
            floating.update(op["outputs"])
            nodes += [tensors[i] for i in op["outputs"]]
    return nodes


def export_onnx(model: keras.Model, path: str | os.PathLike, readout: str | None = None,
                batch_size: int | None = None, overwrite: bool = False) -> pathlib.Path:
    """ONNX model (opset 17): input "image" float32 (B, 80, 80, 1), outputs "keypoints" (B, K, 2) and
    "confidence" (B, K); B any size unless ``batch_size``. Needs the ``onnx`` extra (tf2onnx)."""
    import tensorflow as tf

    from rcn_keras.extras import require
    from rcn_keras.models.head import as_map_model, input_side, with_readout

    tf2onnx = require("tf2onnx", "ONNX export", "tf2onnx", "onnx")
    path = check_export_path(path, "onnx", overwrite)
    infer = with_readout(as_map_model(model), _readout_of(model, readout), getattr(model, "shape_prior", None),
                         getattr(model, "label_offsets", None))
    side = input_side(model)
    spec = (tf.TensorSpec([batch_size, side, side, 1], tf.float32, name="image"),)

    @tf.function(input_signature=spec)
    def serve(image):
        out = infer(image, training=False)
        return {"keypoints": tf.identity(out["keypoints"], name="keypoints"),
                "confidence": tf.identity(out["confidence"], name="confidence")}

    import logging

    log = logging.getLogger("tf2onnx")
    level = log.level
    log.setLevel(logging.CRITICAL)  # its optimiser logs tracebacks of passes it skips; the model is right
    try:
        proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=ONNX_OPSET)
    finally:
        log.setLevel(level)
    atomic_write_bytes(path, proto.SerializeToString())
    return pathlib.Path(path)


def export_model(model: keras.Model, path: str | os.PathLike, format: str = "saved_model",
                 readout: str | None = None, batch_size: int | None = None, quantize: str = "none",
                 representative=None, overwrite: bool = False) -> pathlib.Path:
    """Export in ``format`` ("saved_model" and "onnx": any batch unless ``batch_size``; "tflite": a
    fixed batch, default 1, and ``quantize`` / ``representative`` as `export_tflite`). An existing
    ``path`` is replaced only when it is an earlier export of the same format, or with ``overwrite``."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    if quantize != "none" and format != "tflite":
        raise ValueError(f"quantize={quantize!r} is for --format tflite only (got format {format!r})")
    if format == "saved_model":
        return export_saved_model(model, path, readout, batch_size, overwrite)
    if format == "onnx":
        return export_onnx(model, path, readout, batch_size, overwrite)
    return export_tflite(model, path, readout, batch_size or 1, quantize, representative, overwrite)
