"""NME, failure rate, AUC, CED and evaluation reports."""

from rcn_keras.evaluation.nme import auc, ced, failure_rate, inter_ocular, per_sample_nme, project_to_border
from rcn_keras.evaluation.report import evaluate_predictions, predict_faceset, write_report

__all__ = ["auc", "ced", "evaluate_predictions", "failure_rate", "inter_ocular", "per_sample_nme",
           "predict_faceset", "project_to_border", "write_report"]
