"""Fine-tuning: a network rebuilt for another keypoint count or width, starting from a trained one's weights.

Every layer whose weights have the same name and shapes in both networks is copied (trunk, decoder,
LCN). The K-map output convs (and SumNet's per-keypoint branch weights) have other shapes for another
K: with a ``point_map`` (new point j is the source's point ``point_map[j]``) their channels are taken
from those points; else the output convs start at zero (every map uniform, so the first updates do not
push large random logits back through the trained features) and branch weights as initialised.

A wider network (``width`` larger than the source's), or the source given a 160x160 input (its finer
level H, `ModelConfig.input_size`), starts as the same function: each hidden layer
keeps the source's channels at their places (the concatenations of the decoder followed through the
graph) and its new channels start as initialised, but every weight from a new channel into an old one
is zero, so the old channels, and the maps, are computed exactly as before; training then puts the new
channels to use (zero-padded widening, in the spirit of Net2WiderNet).
"""

from __future__ import annotations

import keras
import numpy as np

from rcn_keras.models.config import ModelConfig
from rcn_keras.models.layers import BranchSum
from rcn_keras.models.registry import build_from_config

MIXING = ("kernel", "pointwise_kernel")  # weights (k, k, in, out) that mix input channels into outputs


def _mixes_channels(layer) -> bool:
    """A conv (plain or the pointwise half of a separable one): its outputs are channels of its own."""
    return any(w.name in MIXING for w in layer.weights)


def transfer_weights(source: keras.Model, target: keras.Model, point_map: list[int] | None = None) -> list[str]:
    """Copy the weights of every layer of ``target`` that ``source`` has under the same name with the
    same weight shapes; layers whose last axis is the keypoint axis take the ``point_map`` channels, or
    (output convs) start at zero. Returns the names of the layers not copied from ``source``."""
    k_new, k_old = target.output.shape[-1], source.output.shape[-1]
    positions = source_channel_positions(source, target)
    # the layers whose last weight axis is the keypoint axis, told apart from hidden ones of K channels
    per_keypoint = _keypoint_layers(target) | {layer.name for layer in target.layers
                                               if isinstance(layer, BranchSum)} if point_map is not None else set()
    fresh = []
    for layer in target.layers:
        if not layer.weights:
            continue
        try:
            src = source.get_layer(layer.name)
        except ValueError:
            fresh.append(layer.name)
            continue
        old = [np.asarray(keras.ops.convert_to_numpy(w)) for w in src.weights]
        shapes = [tuple(w.shape) for w in layer.weights]
        places = positions.get(layer.name)
        if places is not None and [w.shape for w in old] != shapes and _fits(layer, old, *places):
            old = _widened(layer, old, *places)
        if layer.name in per_keypoint and all(w.shape[-1] == k_old and s[-1] == k_new and w.shape[:-1] == s[:-1]
                                              for w, s in zip(old, shapes)):
            layer.set_weights([w[..., list(point_map)] for w in old])  # also when the point count is the same
            continue
        if [w.shape for w in old] == shapes:
            layer.set_weights(old)
            continue
        per_point = all(w.shape[-1] == k_old and s[-1] == k_new and w.shape[:-1] == s[:-1] for w, s in zip(old, shapes))
        if per_point and point_map is not None:
            layer.set_weights([w[..., list(point_map)] for w in old])
            continue
        if per_point and "kernel" in {w.name for w in layer.weights}:
            layer.set_weights([np.zeros(s, np.float32) for s in shapes])
        fresh.append(layer.name)
    return fresh


def _fits(layer, old: list[np.ndarray], inputs: np.ndarray, outputs: np.ndarray | None) -> bool:
    """Whether the source weights ``old`` fit inside ``layer``'s at the places found for the source's
    channels (``inputs``, ``outputs``; the keypoint axis aside): not so where the networks differ in
    more than width, e.g. in their branches."""

    def placed(places, count, room):  # ``count`` source channels at ``places``, inside ``room`` channels
        return places.size == count and (places.size == 0 or places.max() < room)

    conv = _mixes_channels(layer)
    for w, v in zip(old, layer.weights):
        room = tuple(v.shape)
        if w.ndim != len(room) or any(a > b for a, b in zip(w.shape[:-1], room[:-1])):
            return False
        if w.ndim == 4 and not placed(inputs, w.shape[2], room[2]):
            return False
        if w.ndim == 4 and v.name != "depthwise_kernel" and outputs is not None \
                and not placed(outputs, w.shape[3], room[3]):
            return False
        if w.ndim == 1 and not (conv and outputs is None):  # a K-map bias lies on the keypoint axis
            if not placed(outputs if conv else inputs, w.shape[0], room[0]):
                return False
    return True


def source_channel_positions(source: keras.Model, target: keras.Model) -> dict[str, tuple]:
    """For each layer of ``target`` with weights and one input: (positions of the source's input
    channels in its input, positions of the source's output channels in its output; None for the K-map
    layers, whose output axis is the keypoint axis, and for layers that pass channels through). The
    source's channels lead each conv's output in their order; concatenations shift them by the width of
    the tensors before them."""
    head = _keypoint_layers(target)
    in_source = {layer.name: layer for layer in source.layers}
    where: dict[int, np.ndarray] = {}  # id of a target tensor -> where the source's channels sit in it
    found = {}
    for op in target.operations:
        node = op._inbound_nodes[0]
        inputs = [where.get(id(t), np.arange(t.shape[-1])) for t in node.input_tensors]
        conv = _mixes_channels(op)
        if isinstance(op, keras.layers.Concatenate):
            offsets = np.cumsum([0] + [t.shape[-1] for t in node.input_tensors[:-1]])
            out = np.concatenate([p + o for p, o in zip(inputs, offsets)])
        elif conv and op.name in head:
            out = None
        elif conv:
            # a conv the source lacks (a branch it has not: another count, the 160 input's H) adds
            # channels of its own only, which start with zero weights into the source's
            out = np.arange(in_source[op.name].output.shape[-1]) if op.name in in_source else np.arange(0)
        else:  # channels pass through (pooling, upsampling, normalisation, activation, ...)
            out = inputs[0] if inputs else None
        if op.weights and len(inputs) == 1:
            found[op.name] = (inputs[0], out if conv else None)
        if out is not None:
            for t in node.output_tensors:
                where[id(t)] = out
    return found


def _keypoint_layers(model: keras.Model) -> set[str]:
    """Names of the convs whose output axis is the keypoint axis: those that reach the model output
    through operations that keep the channel count (read back from the output, stopping at each conv)."""
    names, frontier = set(), [model.output]
    while frontier:
        tensor = frontier.pop()
        op = tensor._keras_history.operation
        if _mixes_channels(op):
            names.add(op.name)
            continue
        inputs = op._inbound_nodes[0].input_tensors
        frontier.extend(t for t in inputs if t.shape[-1] == tensor.shape[-1])
    return names


def _widened(layer, old: list[np.ndarray], inputs: np.ndarray, outputs: np.ndarray | None) -> list[np.ndarray]:
    """``layer``'s initial weights with the source weights ``old`` put at the source channels' positions
    (``inputs`` in its input, ``outputs`` in its output) and zero weights from new input channels into
    old output channels, so the old outputs are computed as before. ``outputs`` None: a pass-through
    layer (channels at ``inputs``), or a K-map conv (its output axis is kept as the source's)."""
    conv = _mixes_channels(layer)
    new = []
    for w, v in zip(old, layer.weights):
        init = np.array(keras.ops.convert_to_numpy(v), dtype=np.float32)
        name = v.name
        if name in MIXING:  # (k, k, in, out)
            if outputs is None:  # K maps: new input channels start with zero weights into every map
                init = np.zeros(init.shape[:-1] + w.shape[-1:], np.float32)
                init[:, :, inputs, :] = w
            else:
                init[..., outputs] = 0.0
                init[:, :, inputs[:, None], outputs[None, :]] = w
        elif name == "depthwise_kernel":  # (k, k, in, multiplier): one filter per channel
            init[:, :, inputs, :] = w
        elif w.ndim == 1 and conv and outputs is not None:
            init[outputs] = w  # biases of a widened conv
        elif w.ndim == 1 and not conv:
            init[inputs] = w  # per-channel weights of a pass-through layer (batch normalisation)
        else:
            init = w  # K-map biases (the keypoint axis, handled by the caller), shared kernels
        new.append(init)
    return new


def for_keypoints(source: keras.Model, config: ModelConfig, num_keypoints: int,
                  point_map: list[int] | None = None) -> tuple[keras.Model, list[str]]:
    """The network ``config`` (the source's own) rebuilt for ``num_keypoints`` maps, in the current dtype
    policy, with ``source``'s weights wherever they fit (``point_map``: see the module); returns it and
    the layers not copied from ``source``."""
    k_old = source.output.shape[-1]
    if point_map is not None and (len(point_map) != num_keypoints
                                  or not all(isinstance(i, int) and 0 <= i < k_old for i in point_map)):
        raise ValueError(f"init_points must list, for each of the {num_keypoints} new points, the index of a "
                         f"point of the trained model (0..{k_old - 1}), got {point_map}")
    new = config.replace(num_keypoints=num_keypoints)
    model = build_from_config(new)
    model.rcn_config = new
    fresh = transfer_weights(source, model, point_map)
    if len(fresh) == len([layer for layer in model.layers if layer.weights]):
        raise ValueError("no layer of the trained model fits the new network: is it the same architecture, "
                         "at least as wide? (a trained network can be widened, not narrowed)")
    return model, fresh
