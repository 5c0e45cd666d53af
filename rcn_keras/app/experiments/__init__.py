"""Named experiments (`rcn experiment NAME`): real-face training runs and the paper's tables in miniature
(`definitions`: the rows, `runner`: training and results tables, `paper_report`: the paper-style tables)."""
