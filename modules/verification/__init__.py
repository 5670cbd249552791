"""Scores of stored forecasts against ERA5 (`scores`), their report (`report`), and the
`python -m modules.verification` command (`__main__`)."""
