"""The one preset registry: every preset is complete and valid data, shipped weights are exactly the
presets that name them, and a training run can be made from every recipe."""

import pytest

from rcn_keras.app.training.config import preset_train_config
from rcn_keras.models.config import READOUTS, DenoiserConfig, ModelConfig
from rcn_keras.presets import PRESETS, WEIGHTS_DIR, get_preset, list_presets


def test_presets_are_valid_data():
    for name, preset in PRESETS.items():
        assert preset.name == name and preset.model.name == name
        assert isinstance(preset.model, (ModelConfig, DenoiserConfig)) and preset.readout in READOUTS
        assert preset.description
        config = preset_train_config(name, output_dir="unused", **{"data.root": "/data"})  # every recipe key is a valid option
        assert config.model_config() == preset.model


def test_shipped_weights_are_the_presets_that_name_them():
    on_disk = sorted(p.name for p in WEIGHTS_DIR.glob("*.keras"))
    assert on_disk == sorted(PRESETS[n].weights for n in list_presets(shipped=True))
    for name in list_presets(shipped=True):
        card = PRESETS[name].card()
        assert card is not None and card["name"] == name and card["readout"] == PRESETS[name].readout
        assert card["keypoints"] == PRESETS[name].num_keypoints


def test_lists_and_unknown_names():
    assert set(list_presets(shipped=True)) == {"rcn-300w", "rcn-300w-fast", "rcn-afw5", "sumnet-afw5"}
    assert "rcn_mtfl" in list_presets(shipped=False) and "denoiser_300w" in list_presets(denoisers=True)
    with pytest.raises(ValueError, match=r"unknown preset 'rcn_mtf'.*did you mean 'rcn_mtfl'"):
        get_preset("rcn_mtf")
    with pytest.raises(ValueError, match="readout='nearest' is not allowed"):
        PRESETS["rcn_mtfl"].__class__("x", PRESETS["rcn_mtfl"].model, readout="nearest")
