"""Where a forecast's initial conditions come from.

The source tags input fields, runs, predictions and scores, so that forecasts of the same cycle
from ERA5 (the customer's J-6 hindcast) and from ECMWF's open IFS analyses (live) live side by
side. Each source has its own API address, schedule entry and run locks.
"""
from __future__ import annotations

from enum import StrEnum


class InputSource(StrEnum):
    """A source of initial conditions; its text (value) is what the database, the CLI and
    the logs use."""

    ERA5 = "era5"  # ERA5 reanalysis, ~5 days late: the default J-6 cycle
    IFS_OPENDATA = "ifs-opendata"  # ECMWF IFS HRES open data, a few hours late

    @property
    def label(self) -> str:
        """The source's name in messages ("no ERA5 snapshot at ...")."""
        return _LABELS[self]

    @classmethod
    def parse(cls, text: str) -> InputSource:
        """The source named `text`; ValueError listing the known names otherwise."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            known = ", ".join(source.value for source in cls)
            raise ValueError(f"unknown source {text!r} (known: {known})") from None


DEFAULT_SOURCE = InputSource.ERA5
ECMWF_OPENDATA_URL = "https://data.ecmwf.int/forecasts"  # ECMWF's own open-data portal
_LABELS = {InputSource.ERA5: "ERA5", InputSource.IFS_OPENDATA: "IFS open-data"}
