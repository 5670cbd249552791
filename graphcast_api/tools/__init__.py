"""Command-line tools around the engine: fetch the published files, run a rollout to
NetCDF, benchmark the engine, write a synthetic ERA5-like dataset."""
