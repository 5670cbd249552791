"""Scores of stored forecasts against the analyses of their own source (`scores`), their
report (`report`), and the `python -m modules.verification` command (`__main__`)."""
