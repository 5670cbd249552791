"""GraphCast inference: the PyTorch engine (`engine`), the HTTP service (`service`) and the
command-line tools (`tools`).

It imports `graphcast_contract` and never `modules`. This top-level module stays
import-light (no torch): only the engine's forecaster loads torch, on first use.
"""
