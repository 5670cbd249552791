"""One fp32 step of a random published-model-shaped network, chunked encoder vs unchunked.

The engine encodes the grid in chunks of grid nodes (network.ENCODE_CHUNK_NODES) so that the
0.25° models fit in memory; this check runs one 6-hour step with the default chunks and with
the whole grid as one chunk, on the same network and inputs, and prints the largest
difference over the output RMS (fp32: expect ~1e-6, summation order only). Random weights
with the model's shapes, a synthetic batch at its resolution, statistics measured on it.
At 0.25° the unchunked fp32 encoder needs many GiB (1.6 M edges × 512 × 4 bytes = 3.3 GB
per temporary): run it there alone on a 24 GiB machine.

    python benchmarks/check_chunked_encoder.py [--model GraphCast_small] [--chunk-nodes N]
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from graphcast_api.engine import Forecaster
from graphcast_api.engine.checkpoint import random_checkpoint
from graphcast_api.engine.network import ENCODE_CHUNK_NODES
from graphcast_api.tools.bench import measured_stats, peak_rss_gib
from graphcast_api.tools.synthetic_era5 import synthetic_dataset

TOLERANCE = 1e-4  # of the output RMS: far above fp32 reordering, far below any real bug


def step(forecaster: Forecaster, features: torch.Tensor) -> tuple[np.ndarray, float]:
    """(normalised outputs of one step, seconds)."""
    start = time.perf_counter()
    outputs = forecaster.network(features).numpy()
    return outputs, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="GraphCast_small",
                        choices=("GraphCast_small", "GraphCast_operational", "GraphCast"))
    parser.add_argument("--chunk-nodes", type=int, default=ENCODE_CHUNK_NODES,
                        help="grid nodes per encoder chunk on the chunked side")
    parser.add_argument("--compile", action="store_true", help="torch.compile both sides")
    args = parser.parse_args(argv)

    checkpoint = random_checkpoint(args.model)
    batch = synthetic_dataset(resolution=checkpoint.model_config.resolution,
                              levels=checkpoint.task_config.pressure_levels, n_times=2)
    forecaster = Forecaster(checkpoint, measured_stats(batch, checkpoint.task_config),
                            name=args.model, precision="fp32", device="cpu",
                            compile=args.compile, encode_chunk_nodes=args.chunk_nodes)
    forecaster.network.reuse_memory = False  # the lowest peak: this is a check, not a timing
    features = forecaster.first_step_features(batch)
    num_grid = features.shape[0]

    chunked, chunked_s = step(forecaster, features)
    count = len(forecaster.network.encoder_chunks.node_starts)
    forecaster.network.plan_encoder(num_grid)
    whole, whole_s = step(forecaster, features)
    difference = float(np.abs(chunked - whole).max() / np.sqrt(np.mean(whole ** 2)))
    print(f"{args.model} fp32, {num_grid} grid nodes: {count} encoder chunks {chunked_s:.1f} s,"
          f" one chunk {whole_s:.1f} s; max |chunked - unchunked| / RMS = {difference:.2e} "
          f"(limit {TOLERANCE:.0e}); peak RSS {peak_rss_gib():.2f} GiB")
    return 0 if difference <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
