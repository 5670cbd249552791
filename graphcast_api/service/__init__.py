"""The HTTP service of docs/api.md: FastAPI app, request checks, queue, guards, `serve`.

It serves any object with the `model_card.Forecaster` interface; only `serve` loads the
PyTorch engine, inside its `run` function.
"""
