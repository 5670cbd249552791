"""Where a cycle's analyses come from: the source tags of the input store and the job.

`era5`: ERA5 (reanalysis, ~5 days behind real time), the default.
`ifs-opendata`: ECMWF's IFS HRES step-0 fields from the real-time open data (hours behind),
the input GraphCast_operational was fine-tuned on; it carries no precipitation input.
"""
from __future__ import annotations

ERA5 = "era5"
IFS_OPENDATA = "ifs-opendata"
SOURCES = (ERA5, IFS_OPENDATA)
LABELS = {ERA5: "ERA5", IFS_OPENDATA: "IFS open-data"}  # in messages: "no ERA5 snapshot at ..."
