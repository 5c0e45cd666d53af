"""``rcn models``: every preset (network, keypoints, parameters, read-out) and the shipped models."""

from __future__ import annotations

import argparse

NAME = "models"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(NAME, help="list presets and shipped models")
    p.set_defaults(func=run, needs_tensorflow=False)  # the parameter counts are data
    return p


def count_parameters(name: str) -> int:
    """Parameters of preset ``name``'s network: from the presets' data, else built (imports TensorFlow)."""
    from rcn_keras.presets import PRESETS, parameter_counts

    counts = parameter_counts()
    if name in counts:
        return counts[name]
    from rcn_keras.runtime import import_tensorflow_quietly

    import_tensorflow_quietly()
    from rcn_keras.models.denoising import build_denoiser
    from rcn_keras.models.registry import build_model

    return (build_denoiser(name) if PRESETS[name].is_denoiser else build_model(name)).count_params()


def run(args) -> int:
    from rcn_keras.presets import PRESETS, list_presets

    print(f"{'preset':<20} {'network':<9} {'K':>3} {'params':>11}  {'read-out':<18} description")
    for name in list_presets():
        preset = PRESETS[name]
        kind = "denoiser" if preset.is_denoiser else f"{preset.model.family}-{preset.model.branches}"
        print(f"{name:<20} {kind:<9} {preset.num_keypoints:>3} {count_parameters(name):>11,}  "
              f"{'-' if preset.is_denoiser else preset.readout:<18} {preset.description}")
    print("\nshipped models (trained weights, load by name):")
    width = max(len(n) for n in list_presets(shipped=True)) + 1
    for name in list_presets(shipped=True):
        card = PRESETS[name].card() or {}
        val = (card.get("validation") or [{}])[0]
        score = f"validation NME {val['nme']:.2f} % ({val['normaliser']})" if "nme" in val else ""
        print(f"  {name:<{width}} {PRESETS[name].num_keypoints} points, read-out {PRESETS[name].readout}, {score}")
    return 0
