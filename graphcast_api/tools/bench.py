"""`python -m graphcast_api bench`: GraphCast rollout speed and memory on this machine.

    python -m graphcast_api bench [--precision fp32|bf16] [--steps 4] [--repeats 3]
        [--checkpoint P.npz --stats-dir DIR --example-batch B.nc] [--device cpu|cuda]

Without files: random weights with GraphCast_small's shapes, a synthetic 1.0° 13-level batch
and statistics measured on it. Prints graph build time, first-call time, the median of the
timed rollouts, peak RSS ("unavailable", null in the JSON, on Windows), the GFLOP/s of dense
4096² matrix products (bf16, fp32; fastest of five calls) and the rollout's achieved GFLOP/s
(matrix-product FLOPs of the network); the last line is one JSON object with those figures.
`rollout_cpu_s_median` (CPU seconds of all threads) shows how much of a slow wall time is
due to other processes sharing the cores.
Precision, device and compile resolve like `serve`'s (graphcast_api/settings.py); graphs and
compiled kernels are built afresh in a temporary folder, so that their build time is measured
(with --warm-caches, the settings' cache folder is used instead). torch loads only when it runs.
`python -m graphcast_api.bench` is the same command.
"""
from __future__ import annotations

import argparse
import collections
import functools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from graphcast_api.engine.configs import PRODUCTS, ModelConfig, TaskConfig
from graphcast_api.settings import PRECISIONS, ServiceSettings, default_cache_dir
from graphcast_api.tools.predict import (
    ToolError,
    add_engine_options,
    engine_settings,
    load_files,
    make_forecaster,
    split_example_batch,
    tool_command,
)
from graphcast_contract.errors import ExitCode, exit_code_help

if TYPE_CHECKING:
    import torch
    import xarray as xr

    from graphcast_api.engine import Forecaster
    from graphcast_api.engine.graph import GraphCastGraphs
    from graphcast_api.engine.stats import NormalizationStats

EXIT_CODES = (ExitCode.INTERNAL, ExitCode.USAGE, ExitCode.NO_DATA, ExitCode.UNREADABLE_FILE,
              ExitCode.OUTPUT_FAILED, ExitCode.MODEL_FAILED, ExitCode.DEVICE_UNAVAILABLE)


def matmul_gflops(dtype: torch.dtype, size: int = 4096, repeats: int = 5) -> float:
    """GFLOP/s of a dense size×size by size×size product (all threads, fastest call)."""
    import torch

    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    return 2 * size ** 3 / _best_seconds(functools.partial(torch.mm, a, b), repeats) / 1e9


# Dense products the bench rates: the 4096² reference and one edge-MLP layer of
# GraphCast_small's processor (81,920 edges × 512 by 512 × 512).
PRODUCT_SHAPES: dict[str, tuple[int, int, int]] = {"4096": (4096, 4096, 4096),
                                                    "edge": (81_920, 512, 512)}
# Profiler op names that are dense products (self time, so nested ops count once).
PRODUCT_OPS = frozenset({"aten::mm", "aten::addmm", "aten::bmm", "aten::matmul",
                         "aten::linear", "mkldnn::_linear_pointwise", "mkl::_mkl_linear",
                         "graphcast::onednn_linear"})


def _best_seconds(fn, repeats: int) -> float:
    """The fastest of `repeats` calls after a warm-up: what the machine can do. Hosts of this
    kind share their cores; single calls of one product have varied 4× within a minute."""
    fn()
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - start)
    return min(timings)


def product_rates(repeats: int = 5, compiled: bool = True) -> dict[str, dict[str, dict]]:
    """GFLOP/s of x @ w per back end, precision and shape (PRODUCT_SHAPES), this process,
    fastest call of each.

    matmul: torch's own product (MKL in fp32, oneDNN without prepacking in bf16); onednn:
    oneDNN's linear with the weight prepacked once, as the engine uses it; compiled: Inductor
    with freezing (which prepacks the weight as it chooses). Measured because which one is
    fastest differs between CPUs (MKL runs fp32 at about half speed on AMD EPYC).
    """
    import torch

    rates: dict[str, dict[str, dict]] = {"matmul": {}, "onednn": {}}
    if compiled:
        rates["compiled"] = {}
    for label, dtype_name in PRECISIONS.items():
        dtype = getattr(torch, dtype_name)
        for backend in rates:
            rates[backend][label] = {}
        for shape, (rows, inner, cols) in PRODUCT_SHAPES.items():
            gflop = 2 * rows * inner * cols / 1e9
            x = torch.randn(rows, inner, dtype=dtype)
            w = torch.randn(inner, cols, dtype=dtype) / inner ** 0.5
            with torch.no_grad():
                rates["matmul"][label][shape] = gflop / _best_seconds(
                    functools.partial(torch.mm, x, w), repeats)
                if torch.backends.mkldnn.is_available():
                    packed = torch.ops.mkldnn._reorder_linear_weight(w.t().contiguous())
                    rates["onednn"][label][shape] = gflop / _best_seconds(functools.partial(
                        torch.ops.mkldnn._linear_pointwise, x, packed, None, "none", [], ""),
                        repeats)
                if compiled:
                    rates["compiled"][label][shape] = gflop / _best_seconds(
                        _compiled_linear(w, x), repeats)
    return rates


def _compiled_linear(w: torch.Tensor, x: torch.Tensor):
    """x @ w compiled by Inductor with freezing (weights folded in and prepacked)."""
    import torch
    import torch._inductor.config as inductor_config

    layer = torch.nn.Linear(w.shape[0], w.shape[1], bias=False, dtype=w.dtype)
    layer.weight.data = w.t().contiguous()
    layer.eval()
    with inductor_config.patch(freezing=True):
        function = torch.compile(layer, dynamic=False)
        function(x)
    return lambda: function(x)


# The AMX back end's fused edge kernel: its products and their element-wise work in one op.
FUSED_OP = "graphcast::amx_edge_mlp"


def product_share(network, features: torch.Tensor) -> tuple[float, float, float, list]:
    """(wall s, share in dense products, share in the fused AMX edge kernel FUSED_OP, top
    other ops, FUSED_OP among them) of one network step, profiled."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        network(features)
        wall = time.perf_counter() - start
    events = prof.key_averages()
    products = sum(e.self_cpu_time_total for e in events if e.key in PRODUCT_OPS) / 1e6
    fused = sum(e.self_cpu_time_total for e in events if e.key == FUSED_OP) / 1e6
    others = sorted(((e.key, e.self_cpu_time_total / 1e6) for e in events
                     if e.key not in PRODUCT_OPS), key=lambda item: -item[1])
    return wall, products / wall, fused / wall, others[:6]


def rollout_flops(model_config: ModelConfig, task_config: TaskConfig, graphs: GraphCastGraphs,
                  steps: int, batch: int = 1, recomputed: bool = False) -> float:
    """Matrix-product FLOPs of a rollout as this engine computes it: static parts excluded,
    unless the grid2mesh/mesh2grid static edge terms are `recomputed` each step."""
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
    if recomputed:  # edge embedding (4 features in, hidden layers) and first-layer block
        per_step += (e_g2m + e_m2g) * (4 * latent + square + latent * latent)
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


def run_forecast(forecaster: Forecaster, inputs: xr.Dataset, steps: int,
                 forcings: xr.Dataset | None, whole: bool) -> None:
    """One forecast: all steps' grids returned (`forecast`), or, as the service does after
    taking its sites, each step dropped once made and the inputs handed over to be rolled in
    place (`rollout` with overwrite_inputs: `inputs` must be this forecast's own)."""
    if whole:
        forecaster.forecast(inputs, steps, forcings)
    else:
        collections.deque(forecaster.rollout(inputs, steps, forcings, overwrite_inputs=True),
                          maxlen=0)


def inputs_source(inputs: xr.Dataset, folder: Path, whole: bool) -> Callable[[], xr.Dataset]:
    """Where each forecast's inputs come from: `inputs` itself for `forecast`, which leaves
    them as they are; else a fresh copy read back from a NetCDF file in `folder` per call, so
    that each rollout has inputs of its own to hand over (as each request has its decoded
    arrays) and the bench holds no other copy meanwhile (1.9 GB at 0.25° and 37 levels)."""
    if whole:
        return lambda: inputs
    import xarray as xr

    path = folder / "inputs.nc"
    inputs.to_netcdf(path)
    return lambda: xr.load_dataset(path, decode_timedelta=True)


def peak_rss_gib() -> float | None:
    """Peak resident memory of this process so far, GiB; None where the `resource` module is
    missing (Windows). Imported here, so that every other command runs there too."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** (30 if sys.platform == "darwin" else 20)  # bytes on macOS, else KiB


def rss_text(gib: float | None) -> str:
    """A peak RSS as printed: GiB, or 'unavailable'."""
    return "unavailable" if gib is None else f"{gib:.2f} GiB"


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
    parser.add_argument("--model", default="GraphCast_small",
                        choices=("GraphCast_small", "GraphCast_operational", "GraphCast"),
                        help="shapes of the random weights and synthetic batch without files")
    parser.add_argument("--products", choices=PRODUCTS, default=None,
                        help="force the engine's dense-product back end (default: its choice)")
    parser.add_argument("--edge-terms", choices=("stored", "recomputed"), default=None,
                        help="keep the grid2mesh/mesh2grid static edge terms in memory or "
                             "recompute them each step (default: the engine's choice, "
                             "network.default_edge_terms)")
    parser.add_argument("--warm-caches", action="store_true",
                        help="use the settings' cache folder (graphs, compiled kernels) instead "
                             "of a fresh one: run twice to time a new process with warm caches")
    parser.add_argument("--no-memory-reuse", action="store_true",
                        help="let freed memory go back to the system at once while the network "
                             "runs (lower peak, slower; see graphcast_api/engine/heap.py)")
    parser.add_argument("--whole-forecast", action="store_true",
                        help="time Forecaster.forecast, which returns every step's grid (as "
                             "`predict` does), instead of the rollout one step at a time (as "
                             "the service, which keeps only its sites)")
    parser.add_argument("--no-product-rates", action="store_true",
                        help="skip the per-back-end product rates (keeps the 4096² ones)")
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

        checkpoint = random_checkpoint(args.model)
        # The two input frames only (the engine computes the targets' forcings): at 0.25°
        # and 37 levels every frame is ~1 GiB, which would count in the peak RSS.
        batch = synthetic_dataset(resolution=checkpoint.model_config.resolution,
                                  levels=checkpoint.task_config.pressure_levels, n_times=2)
        stats = measured_stats(batch, checkpoint.task_config)
    inputs, forcings = split_example_batch(batch, args.steps if all(files) else 0,
                                           checkpoint.task_config.forcing_variables)
    return checkpoint, stats, inputs, forcings


def bench(args: argparse.Namespace) -> None:
    """Set up, time the rollouts, print the figures; ToolError on expected failures."""
    if args.steps < 1 or args.repeats < 1:
        raise ToolError(ExitCode.USAGE, "--steps and --repeats must be at least 1")
    settings = engine_settings(args)
    with tempfile.TemporaryDirectory() as folder:
        _bench(args, settings, folder)


def _bench(args: argparse.Namespace, settings: ServiceSettings, folder: str) -> None:
    """`bench` with a temporary `folder` for the inputs (see inputs_source) and, unless
    --warm-caches, the graphs and compiled kernels."""
    import torch

    from graphcast_api.engine import ForecastInputError
    from graphcast_api.engine.heap import reuse_freed_memory

    checkpoint, stats, inputs, forcings = _setup(args)
    batch = inputs.sizes["batch"]
    next_inputs = inputs_source(inputs, Path(folder), args.whole_forecast)
    del inputs  # only next_inputs holds them now (nothing, when read back from the file)
    with reuse_freed_memory():  # as the network runs: rate the products, not page faults
        matmul_bf16, matmul_fp32 = matmul_gflops(torch.bfloat16), matmul_gflops(torch.float32)
    print(f"matmul 4096²: bf16 {matmul_bf16:.0f} GFLOP/s, fp32 {matmul_fp32:.0f} GFLOP/s "
          f"({torch.get_num_threads()} threads)")

    cache = (settings.cache_dir or default_cache_dir()) if args.warm_caches \
        else Path(folder) / "cache"
    start = time.perf_counter()
    forecaster = make_forecaster(checkpoint, stats, "bench", settings, Path(cache),
                                 products=args.products, edge_terms=args.edge_terms)
    setup_s = time.perf_counter() - start
    setup_rss = peak_rss_gib()
    forecaster.network.reuse_memory = not args.no_memory_reuse
    setup_times = forecaster.setup_times
    graph_build_s = setup_times["graphs_s"]
    print(f"model {forecaster.precision} on {forecaster.device}, products "
          f"{forecaster.products}, edge terms {forecaster.network.edge_terms}, memory "
          f"reuse {'off' if args.no_memory_reuse else 'on'}, "
          f"{'whole forecast' if args.whole_forecast else 'one step at a time'}: "
          f"set-up {setup_s:.1f} s = graphs "
          f"{'built or loaded (cache folder reused)' if args.warm_caches else 'built'} "
          f"{graph_build_s:.1f} s + static embeddings and packing "
          f"{setup_times['network_s']:.1f} s (peak RSS so far {rss_text(setup_rss)})")

    inputs = next_inputs()
    start = time.perf_counter()
    try:
        run_forecast(forecaster, inputs, args.steps, forcings, args.whole_forecast)
    except ForecastInputError as error:
        raise ToolError(ExitCode.NO_DATA, f"example batch does not fit the checkpoint: "
                                          f"{error}") from error
    first_call_s = time.perf_counter() - start
    del inputs
    print(f"first call ({args.steps} steps): {first_call_s:.1f} s "
          f"(peak RSS so far {rss_text(peak_rss_gib())})")
    timings, cpu_timings = [], []
    for _ in range(args.repeats):
        inputs = next_inputs()
        start, cpu_start = time.perf_counter(), time.process_time()
        run_forecast(forecaster, inputs, args.steps, forcings, args.whole_forecast)
        timings.append(time.perf_counter() - start)
        cpu_timings.append(time.process_time() - cpu_start)
        del inputs
        print(f"rollout ({args.steps} steps): {timings[-1]:.1f} s wall, "
              f"{cpu_timings[-1]:.1f} s CPU (peak RSS so far {rss_text(peak_rss_gib())})")
    median = statistics.median(timings)
    cpu_median = statistics.median(cpu_timings)
    flops = rollout_flops(checkpoint.model_config, checkpoint.task_config, forecaster.graphs,
                          args.steps, batch, forecaster.network.edge_terms == "recomputed")
    peak_rss = peak_rss_gib()
    achieved = flops / median / 1e9
    print(f"median rollout {median:.1f} s ({median / args.steps:.2f} s/step), "
          f"{achieved:.0f} GFLOP/s achieved, peak RSS {rss_text(peak_rss)}")
    compile_s = max(first_call_s - median, 0.0)
    reused = "; cache folder reused (--warm-caches)" if args.warm_caches else ""
    print(f"first call / warm rollout: {first_call_s / median:.2f} (compile and first-use "
          f"cost ≈ {compile_s:.1f} s{reused})")
    features = forecaster.first_step_features(next_inputs(), forcings)
    step_wall, share, fused, others = product_share(forecaster.network, features)
    print(f"profiled step: {step_wall:.2f} s, {100 * share:.0f} % in dense products"
          + (f", {100 * fused:.0f} % in the fused AMX edge kernel (products with their "
             "element-wise work)" if fused else "") + "; largest other ops (self s): "
          + ", ".join(f"{name} {seconds:.2f}" for name, seconds in others))
    with reuse_freed_memory():  # after the rollouts: their peak RSS is the engine's alone
        rates = {} if args.no_product_rates else product_rates()
    for backend, by_precision in rates.items():
        print(f"products, {backend:8s}: " + "; ".join(
            f"{precision} " + ", ".join(f"{shape} {rate:.0f}" for shape, rate in shapes.items())
            for precision, shapes in by_precision.items()) + " GFLOP/s")
    precision = forecaster.precision
    best_edge = max((r[precision]["edge"] for r in rates.values() if "edge" in r[precision]),
                    default=None)
    gemm = matmul_bf16 if precision == "bf16" else matmul_fp32
    print(f"achieved {achieved:.0f} GFLOP/s = {100 * achieved / gemm:.0f} % of the {precision} "
          f"4096² matmul rate" + (f", {100 * achieved / best_edge:.0f} % of the best {precision}"
                                  f" edge-shaped product ({best_edge:.0f})" if best_edge else ""))
    print(json.dumps({
        "precision": forecaster.precision, "device": forecaster.device, "steps": args.steps,
        "model": args.model if args.checkpoint is None else args.checkpoint.name,
        "products": forecaster.products, "edge_terms": forecaster.network.edge_terms,
        "memory_reuse": forecaster.network.reuse_memory,
        "whole_forecast": args.whole_forecast,
        "graph_build_s": round(graph_build_s, 2), "setup_s": round(setup_s, 2),
        "setup_graphs_s": round(setup_times["graphs_s"], 2),
        "setup_network_s": round(setup_times["network_s"], 2),
        "compile_s": round(compile_s, 2), "warm_caches": args.warm_caches,
        "first_call_s": round(first_call_s, 2), "rollout_s_median": round(median, 2),
        "first_call_over_rollout": round(first_call_s / median, 3),
        "step_s": round(median / args.steps, 3),
        "rollout_s": [round(t, 2) for t in timings],
        "rollout_cpu_s_median": round(cpu_median, 2),
        "peak_rss_gib": None if peak_rss is None else round(peak_rss, 3),
        "setup_peak_rss_gib": None if setup_rss is None else round(setup_rss, 3),
        "matmul_fp32_gflops": round(matmul_fp32, 1), "matmul_bf16_gflops": round(matmul_bf16, 1),
        "product_gflops": {b: {p: {k: round(v, 1) for k, v in shapes.items()}
                               for p, shapes in by.items()} for b, by in rates.items()},
        "best_edge_product_gflops": None if best_edge is None else round(best_edge, 1),
        "achieved_gflops": round(achieved, 1),
        "achieved_share_of_matmul": round(achieved / gemm, 3),
        "product_time_share": round(share, 3), "fused_kernel_time_share": round(fused, 3),
        "profiled_step_s": round(step_wall, 3),
        "rollout_gflop": round(flops / 1e9, 1), "threads": torch.get_num_threads()}))


run = tool_command(bench)
