"""`python -m graphcast_api predict`: a GraphCast rollout from official files to NetCDF.

    python -m graphcast_api predict --checkpoint P.npz --stats-dir DIR --example-batch B.nc \
        --out PRED.nc [--steps 4] [--precision fp32|bf16] [--device cpu|cuda]

B is a dataset in the official example layout: its first two frames are the inputs, the next
`--steps` frames give the target times (their forcings are used when present, computed when
absent). Precision, device, compile and graph cache folder resolve like `serve`'s
(graphcast_api/settings.py). Errors print one line to stderr and exit non-zero; nothing is
written on error. `python -m graphcast_api.predict` is the same command.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from graphcast_api.settings import (
    DEVICES,
    PRECISIONS,
    CacheFolderUnwritable,
    DeviceUnavailable,
    ServiceSettings,
    SettingsError,
    load_service_settings,
    use_kernel_cache,
)
from graphcast_contract.errors import ExitCode, exit_code_help, first_line
from graphcast_contract.files import write_atomically
from graphcast_contract.variables import STATS_FILES

EXIT_CODES = (ExitCode.INTERNAL, ExitCode.USAGE, ExitCode.NO_DATA, ExitCode.UNREADABLE_FILE,
              ExitCode.OUTPUT_FAILED, ExitCode.MODEL_FAILED, ExitCode.DEVICE_UNAVAILABLE)


class ToolError(Exception):
    """A failure of a tool with its exit code; the message is printed as one line."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def tool_command(work: Callable[[argparse.Namespace], None]
                 ) -> Callable[[argparse.Namespace], int]:
    """`work` as a command's `run`: its exit code, a ToolError as one line on stderr (the
    first: a library's message, quoted in it, may run over several)."""
    def run(args: argparse.Namespace) -> int:
        try:
            work(args)
        except ToolError as error:
            print(f"error: {first_line(error)}", file=sys.stderr)
            return error.code
        return ExitCode.OK
    return run


def add_commands(subcommands: argparse._SubParsersAction) -> None:
    """Register the `predict` subcommand."""
    parser = subcommands.add_parser(
        "predict", help="run a GraphCast rollout on an example batch, write NetCDF",
        description=__doc__, epilog=exit_code_help(*EXIT_CODES),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="official checkpoint .npz (params/*.npz)")
    parser.add_argument("--stats-dir", type=Path, required=True,
                        help=f"directory with {', '.join(STATS_FILES)}")
    parser.add_argument("--example-batch", type=Path, required=True,
                        help="NetCDF in the official example-batch layout")
    parser.add_argument("--out", type=Path, required=True, help="predictions NetCDF to write")
    parser.add_argument("--steps", type=int, default=4, help="6-hour steps (default 4)")
    add_engine_options(parser)
    parser.set_defaults(run=run)


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """--precision and --device, as predict and bench take them."""
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="default: GRAPHCAST_API_PRECISION, else the faster one here")
    parser.add_argument("--device", choices=DEVICES, default=None,
                        help="default: GRAPHCAST_API_DEVICE, else cuda when available, else cpu")


def engine_settings(args: argparse.Namespace) -> ServiceSettings:
    """The shared settings of the engine (precision, device, compile, cache folder)."""
    try:
        return load_service_settings(argparse.Namespace(precision=args.precision,
                                                        device=args.device))
    except SettingsError as error:
        raise ToolError(ExitCode.USAGE, str(error)) from error


def load_files(checkpoint_path: Path, stats_dir: Path, batch_path: Path):
    """(checkpoint, statistics, example batch) read from files; ToolError if one fails."""
    import xarray as xr

    from graphcast_api.engine.checkpoint import CheckpointError, load_checkpoint
    from graphcast_api.engine.stats import StatsError, load_stats

    try:
        checkpoint = load_checkpoint(checkpoint_path)
    except CheckpointError as error:
        raise ToolError(ExitCode.MODEL_FAILED, str(error)) from error
    try:
        stats = load_stats(stats_dir, checkpoint.task_config)
    except StatsError as error:
        raise ToolError(ExitCode.MODEL_FAILED, str(error)) from error
    try:
        batch = xr.load_dataset(batch_path, decode_timedelta=True)
    except (OSError, ValueError) as error:
        raise ToolError(ExitCode.UNREADABLE_FILE, f"cannot read example batch {batch_path}: "
                                                  f"{error}") from error
    return checkpoint, stats, batch


def make_forecaster(checkpoint, stats, name: str, settings: ServiceSettings,
                    cache_dir: Path | None = None, products: str | None = None,
                    edge_terms: str | None = None):
    """The engine's Forecaster with the resolved switches; `cache_dir` overrides the
    settings' one; `products` forces the product back end; `edge_terms` as Forecaster's.
    ToolError OUTPUT_FAILED if the cache folder cannot be written, DEVICE_UNAVAILABLE if
    the device (or product back end) is not usable here; the
    precision was checked with the settings, so any other error while the graphs or the
    network are built is a bug (INTERNAL, with its traceback)."""
    from graphcast_api.engine import Forecaster

    try:
        use_kernel_cache(cache_dir or settings.cache_dir)
    except CacheFolderUnwritable as error:
        raise ToolError(ExitCode.OUTPUT_FAILED, str(error)) from error
    try:
        return Forecaster(checkpoint, stats, name=name, precision=settings.precision,
                          device=settings.device, compile=settings.compile,
                          cache_dir=cache_dir or settings.cache_dir, products=products,
                          edge_terms=edge_terms)
    except DeviceUnavailable as error:
        raise ToolError(ExitCode.DEVICE_UNAVAILABLE, str(error)) from error


def split_example_batch(batch, steps: int, forcing_variables: Sequence[str]):
    """(inputs with 2 frames, forcings at the `steps` target frames) from an example batch."""
    if "datetime" not in batch.coords:
        raise ToolError(ExitCode.NO_DATA, "example batch lacks the 'datetime' coordinate")
    if batch.sizes.get("time", 0) < 2 + steps:
        raise ToolError(ExitCode.NO_DATA, f"example batch has {batch.sizes.get('time', 0)} "
                                          f"time frames; 2 inputs + {steps} target frames "
                                          "are needed")
    if "batch" not in batch.dims:
        batch = batch.expand_dims("batch")
    if "batch" not in batch["datetime"].dims:  # expand_dims leaves the coordinates as they are
        batch = batch.assign_coords(datetime=batch["datetime"].expand_dims(
            batch=batch.sizes["batch"]).transpose("batch", "time"))
    last_input_time = batch["time"].values[1]
    inputs = batch.isel(time=[0, 1])
    inputs = inputs.assign_coords(time=inputs["time"].values - last_input_time)
    targets = batch.isel(time=slice(2, 2 + steps))
    present = [v for v in forcing_variables if v in targets.data_vars]
    if not present:
        return inputs, None
    return inputs, targets[present].assign_coords(time=targets["time"].values - last_input_time)


def predict(args: argparse.Namespace) -> None:
    """Load, forecast, write; raise ToolError on any expected failure."""
    from graphcast_api.engine import ForecastInputError

    if args.steps < 1:
        raise ToolError(ExitCode.USAGE, f"--steps must be at least 1, got {args.steps}")
    settings = engine_settings(args)
    checkpoint, stats, batch = load_files(args.checkpoint, args.stats_dir, args.example_batch)
    inputs, forcings = split_example_batch(batch, args.steps,
                                           checkpoint.task_config.forcing_variables)
    forecaster = make_forecaster(checkpoint, stats, args.checkpoint.stem.split(" - ")[0],
                                 settings)
    try:
        prediction = forecaster.forecast(inputs, args.steps, forcings)
    except ForecastInputError as error:
        raise ToolError(ExitCode.NO_DATA, f"example batch does not fit the checkpoint: "
                                          f"{error}") from error
    try:
        with write_atomically(args.out, ".nc.tmp") as temporary:
            prediction.to_netcdf(temporary)
    except OSError as error:
        raise ToolError(ExitCode.OUTPUT_FAILED, f"cannot write {args.out}: {error}") from error


run = tool_command(predict)
