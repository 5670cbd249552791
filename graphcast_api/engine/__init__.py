"""Our PyTorch implementation of GraphCast inference (loads official checkpoints).

`Forecaster`, `ForecastInputError` and `check_device` load lazily, so that torch-free modules
of the engine (`configs`, `stats`) can be imported without torch.
"""
from __future__ import annotations

from typing import Any

__all__ = ["Forecaster", "ForecastInputError", "check_device"]


def __getattr__(name: str) -> Any:
    """Import the forecaster (and torch) on first use of one of its names."""
    if name in __all__:
        from graphcast_api.engine import forecaster

        return getattr(forecaster, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
