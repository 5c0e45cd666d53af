"""Named experiments (`rcn experiment NAME`): real-face training runs and the paper's tables in miniature."""

from rcn_keras.experiments.definitions import EXPERIMENTS, Experiment, Row, get_experiment
from rcn_keras.experiments.runner import run_experiment, write_results

__all__ = ["EXPERIMENTS", "Experiment", "Row", "get_experiment", "run_experiment", "write_results"]
