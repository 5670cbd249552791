"""Our PyTorch implementation of GraphCast inference (loads official checkpoints)."""
from graphcast_api.engine.forecaster import Forecaster, ForecastInputError

__all__ = ["Forecaster", "ForecastInputError"]
