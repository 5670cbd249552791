"""One fp32 step of a random published-model-shaped network, chunked encoder vs unchunked.

The engine encodes the grid in chunks of grid nodes (network.ENCODE_CHUNK_NODES) so that the
0.25° models fit in memory; this check runs one 6-hour step with the default chunks and with
the whole grid as one chunk, on the same network and inputs, and prints the largest
difference over the output RMS (fp32: expect ~1e-6, summation order only). Random weights
with the model's shapes, a synthetic batch at its resolution, statistics measured on it.
At 0.25° the unchunked fp32 encoder needs many GiB (1.6 M edges × 512 × 4 bytes = 3.3 GB
per temporary): run it there alone on a 24 GiB machine.

With --orbits it compares instead the grid2mesh/mesh2grid static edge terms stored once per
orbit of the polar turn (engine/symmetry.py) with every edge's own, recomputed from its own
features (expect ~1e-5: the images' features differ by float32 rounding).

    python benchmarks/check_chunked_encoder.py [--model GraphCast_small] [--chunk-nodes N]
        [--compile] [--orbits]
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
    parser.add_argument("--orbits", action="store_true",
                        help="compare static edge terms stored per orbit with each edge's own")
    args = parser.parse_args(argv)

    checkpoint = random_checkpoint(args.model)
    batch = synthetic_dataset(resolution=checkpoint.model_config.resolution,
                              levels=checkpoint.task_config.pressure_levels, n_times=2)
    stats = measured_stats(batch, checkpoint.task_config)

    def forecaster(edge_terms: str | None) -> Forecaster:
        made = Forecaster(checkpoint, stats, name=args.model, precision="fp32", device="cpu",
                          compile=args.compile, encode_chunk_nodes=args.chunk_nodes,
                          edge_terms=edge_terms)
        made.network.reuse_memory = False  # the lowest peak: this is a check, not a timing
        return made

    first = forecaster("stored" if args.orbits else None)
    features = first.first_step_features(batch)
    num_grid = features.shape[0]
    ours, ours_s = step(first, features)
    if args.orbits:
        rows = first.network.g2m_static.stored_rows + first.network.m2g_static.stored_rows
        del first
        other, other_s = step(forecaster("recomputed"), features)
        sides = (f"terms stored once per orbit ({rows} rows) {ours_s:.1f} s, each edge's own "
                 f"{other_s:.1f} s; max |orbit - own|")
    else:
        count = len(first.network.encoder_chunks.node_starts)
        first.network.plan_encoder(num_grid)
        other, other_s = step(first, features)
        sides = (f"{count} encoder chunks {ours_s:.1f} s, one chunk {other_s:.1f} s; "
                 f"max |chunked - unchunked|")
    difference = float(np.abs(ours - other).max() / np.sqrt(np.mean(other ** 2)))
    print(f"{args.model} fp32, {num_grid} grid nodes: {sides} / RMS = {difference:.2e} "
          f"(limit {TOLERANCE:.0e}); peak RSS {peak_rss_gib():.2f} GiB")
    return 0 if difference <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
