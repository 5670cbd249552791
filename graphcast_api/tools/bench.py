"""`python -m graphcast_api bench`: GraphCast rollout speed and memory on this machine.

    python -m graphcast_api bench [--precision fp32|bf16] [--steps 4] [--repeats 3]
        [--checkpoint P.npz --stats-dir DIR --example-batch B.nc] [--device cpu|cuda]

Without files: random weights with GraphCast_small's shapes, a synthetic 1.0° 13-level batch
and statistics measured on it. Prints graph build time, first-call time, the median of the
timed rollouts, peak RSS, the GFLOP/s of dense 4096² matrix products (bf16, fp32) and the
rollout's achieved GFLOP/s (matrix-product FLOPs of the network); the last line is one JSON
object with those figures. `rollout_cpu_s_median` (CPU seconds of all threads) shows how much
of a slow wall time is due to other processes sharing the cores. Precision, device and
compile resolve like `serve`'s (graphcast_api/settings.py); graphs are always built afresh
in a temporary folder, so that their build time is measured. torch loads only when it runs.
`python -m graphcast_api.bench` is the same command.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from graphcast_api.engine.configs import ModelConfig, TaskConfig
from graphcast_api.tools.predict import (
    ToolError,
    add_engine_options,
    engine_settings,
    load_files,
    make_forecaster,
    split_example_batch,
)
from graphcast_contract.errors import ExitCode, exit_code_help

if TYPE_CHECKING:
    import torch
    import xarray as xr

    from graphcast_api.engine.graph import GraphCastGraphs
    from graphcast_api.engine.stats import NormalizationStats

EXIT_CODES = (ExitCode.INTERNAL, ExitCode.USAGE, ExitCode.NO_DATA, ExitCode.UNREADABLE_FILE,
              ExitCode.MODEL_FAILED, ExitCode.DEVICE_UNAVAILABLE)


def matmul_gflops(dtype: torch.dtype, size: int = 4096, repeats: int = 5) -> float:
    """GFLOP/s of a dense size×size by size×size product (all threads, median after warm-up)."""
    import torch

    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        timings.append(time.perf_counter() - start)
    return 2 * size ** 3 / statistics.median(timings) / 1e9


def rollout_flops(model_config: ModelConfig, task_config: TaskConfig, graphs: GraphCastGraphs,
                  steps: int, batch: int = 1) -> float:
    """Matrix-product FLOPs of a rollout as this engine computes it (static parts excluded)."""
    latent, hidden = model_config.latent_size, model_config.hidden_layers
    grid, mesh = len(graphs.grid_node_features), len(graphs.mesh_node_features)
    e_g2m, e_mesh = len(graphs.grid2mesh.senders), len(graphs.mesh.senders)
    e_m2g = len(graphs.mesh2grid.senders)
    square = latent * latent * hidden                        # hidden layers of one MLP row
    per_step = grid * ((task_config.num_grid_input_channels + 3) * latent + square)  # embed
    per_step += grid * latent * latent + e_g2m * square      # g2m sender projection, edges
    per_step += mesh * (2 * latent * latent + square)        # g2m mesh-node update
    per_step += grid * (latent * latent + square)            # g2m grid-node update
    per_step += model_config.gnn_msg_steps * (
        e_mesh * (latent * latent + square) + mesh * 2 * latent * latent     # edges
        + mesh * (2 * latent * latent + square))                             # nodes
    per_step += mesh * latent * latent + grid * latent * latent + e_m2g * square  # m2g edges
    per_step += grid * (2 * latent * latent + square)        # m2g grid-node update
    per_step += grid * (latent * latent * (hidden - 1) + latent * latent
                        + latent * task_config.num_output_channels)          # decoder
    return 2.0 * per_step * steps * batch


def measured_stats(dataset: xr.Dataset, task_config: TaskConfig) -> NormalizationStats:
    """Statistics measured on a dataset (for synthetic runs without official stats files)."""
    import numpy as np
    import xarray as xr

    from graphcast_api.engine.forcings import add_forcings
    from graphcast_api.engine.stats import NormalizationStats

    data = add_forcings(dataset, task_config.forcing_variables)
    data = data[list(dict.fromkeys(task_config.input_variables + task_config.target_variables
                                   + task_config.forcing_variables))]
    data = data.sel(level=list(task_config.pressure_levels))

    def reduce(values: xr.Dataset, how: str) -> xr.Dataset:
        dims = {name: [d for d in values[name].dims if d != "level"] for name in values}
        result = {name: getattr(values[name], how)(dims[name]) for name in values}
        return xr.Dataset(result).astype(np.float32)

    stddev = reduce(data, "std")
    stddev = stddev.where(stddev > 0, 1.0)
    diffs = reduce(data.diff("time"), "std")
    return NormalizationStats(mean=reduce(data, "mean"), stddev=stddev,
                              diffs_stddev=diffs.where(diffs > 0, 1.0))


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far, GiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def add_commands(subcommands: argparse._SubParsersAction) -> None:
    """Register the `bench` subcommand."""
    parser = subcommands.add_parser(
        "bench", help="time GraphCast rollouts on this machine",
        description=__doc__, epilog=exit_code_help(*EXIT_CODES),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_engine_options(parser)
    parser.add_argument("--steps", type=int, default=4, help="6-hour steps (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rollouts (default 3)")
    parser.add_argument("--checkpoint", type=Path, help="official checkpoint .npz")
    parser.add_argument("--stats-dir", type=Path, help="directory with the statistics files")
    parser.add_argument("--example-batch", type=Path, help="NetCDF, example-batch layout")
    parser.set_defaults(run=run)


def _setup(args: argparse.Namespace):
    """(checkpoint, stats, inputs, forcings or None) from files or synthetic data."""
    files = (args.checkpoint, args.stats_dir, args.example_batch)
    if any(files) and not all(files):
        raise ToolError(ExitCode.USAGE,
                        "give --checkpoint, --stats-dir and --example-batch together")
    if all(files):
        checkpoint, stats, batch = load_files(*files)
    else:
        from graphcast_api.engine.checkpoint import random_checkpoint
        from graphcast_api.tools.synthetic_era5 import synthetic_dataset

        checkpoint = random_checkpoint("GraphCast_small")
        batch = synthetic_dataset(resolution=checkpoint.model_config.resolution,
                                  levels=checkpoint.task_config.pressure_levels,
                                  n_times=2 + args.steps)
        stats = measured_stats(batch, checkpoint.task_config)
    inputs, forcings = split_example_batch(batch, args.steps,
                                           checkpoint.task_config.forcing_variables)
    return checkpoint, stats, inputs, forcings


def run(args: argparse.Namespace) -> int:
    """The `bench` command: its exit code, errors as one line on stderr."""
    try:
        bench(args)
    except ToolError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.code
    return ExitCode.OK


def bench(args: argparse.Namespace) -> None:
    """Set up, time the rollouts, print the figures; ToolError on expected failures."""
    import torch

    from graphcast_api.engine import ForecastInputError
    from graphcast_api.engine.graph import build_graphs

    if args.steps < 1 or args.repeats < 1:
        raise ToolError(ExitCode.USAGE, "--steps and --repeats must be at least 1")
    settings = engine_settings(args)
    checkpoint, stats, inputs, forcings = _setup(args)
    matmul_bf16, matmul_fp32 = matmul_gflops(torch.bfloat16), matmul_gflops(torch.float32)
    print(f"matmul 4096²: bf16 {matmul_bf16:.0f} GFLOP/s, fp32 {matmul_fp32:.0f} GFLOP/s "
          f"({torch.get_num_threads()} threads)")

    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        forecaster = make_forecaster(checkpoint, stats, "bench", settings, Path(cache))
        setup_s = time.perf_counter() - start
    start = time.perf_counter()
    build_graphs(checkpoint.model_config, forecaster.latitudes, forecaster.longitudes)
    graph_build_s = time.perf_counter() - start
    print(f"model {forecaster.precision} on {forecaster.device}: graph build {graph_build_s:.1f} s,"
          f" set-up incl. graphs and static embeddings {setup_s:.1f} s "
          f"(peak RSS so far {peak_rss_gib():.2f} GiB)")

    start = time.perf_counter()
    try:
        forecaster.forecast(inputs, args.steps, forcings)
    except ForecastInputError as error:
        raise ToolError(ExitCode.NO_DATA, f"example batch does not fit the checkpoint: "
                                          f"{error}") from error
    first_call_s = time.perf_counter() - start
    print(f"first call ({args.steps} steps): {first_call_s:.1f} s "
          f"(peak RSS so far {peak_rss_gib():.2f} GiB)")
    timings, cpu_timings = [], []
    for _ in range(args.repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        forecaster.forecast(inputs, args.steps, forcings)
        timings.append(time.perf_counter() - start)
        cpu_timings.append(time.process_time() - cpu_start)
        print(f"rollout ({args.steps} steps): {timings[-1]:.1f} s wall, "
              f"{cpu_timings[-1]:.1f} s CPU")
    median = statistics.median(timings)
    cpu_median = statistics.median(cpu_timings)
    flops = rollout_flops(checkpoint.model_config, checkpoint.task_config, forecaster.graphs,
                          args.steps, inputs.sizes["batch"])
    peak_rss = peak_rss_gib()
    print(f"median rollout {median:.1f} s ({median / args.steps:.2f} s/step), "
          f"{flops / median / 1e9:.0f} GFLOP/s achieved, peak RSS {peak_rss:.2f} GiB")
    print(json.dumps({
        "precision": forecaster.precision, "device": forecaster.device, "steps": args.steps,
        "graph_build_s": round(graph_build_s, 2), "setup_s": round(setup_s, 2),
        "first_call_s": round(first_call_s, 2), "rollout_s_median": round(median, 2),
        "rollout_s": [round(t, 2) for t in timings],
        "rollout_cpu_s_median": round(cpu_median, 2), "peak_rss_gib": round(peak_rss, 3),
        "matmul_fp32_gflops": round(matmul_fp32, 1), "matmul_bf16_gflops": round(matmul_bf16, 1),
        "achieved_gflops": round(flops / median / 1e9, 1),
        "rollout_gflop": round(flops / 1e9, 1), "threads": torch.get_num_threads()}))
