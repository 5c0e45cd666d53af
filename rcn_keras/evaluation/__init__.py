"""NME, failure rate, AUC, CED (`nme`), evaluation reports (`report`) and the denoiser's evaluation."""
