"""GraphCast inference: our PyTorch engine (`graphcast_api.engine`) and its HTTP service.

This top-level module stays import-light (no torch) so that numpy-only helpers such as
`graphcast_api.interpolation` can be used without the engine's dependencies.
"""
