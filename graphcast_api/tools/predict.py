"""`python -m graphcast_api.predict`: a GraphCast rollout from official files to NetCDF.

    python -m graphcast_api.predict --checkpoint P.npz --stats-dir DIR --example-batch B.nc \
        --out PRED.nc [--steps 4] [--precision fp32|bf16] [--device cpu|cuda]

B is a dataset in the official example layout: its first two frames are the inputs, the next
`--steps` frames give the target times (their forcings are used when present, computed when
absent). Errors print one line to stderr and exit non-zero; nothing is written on error.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from graphcast_contract.files import new_temporary_file
from graphcast_contract.variables import STATS_FILES

EXIT_OK = 0
EXIT_USAGE = 2          # bad command-line arguments (argparse)
EXIT_CHECKPOINT = 3     # checkpoint unreadable or not a GraphCast checkpoint
EXIT_STATS = 4          # statistics missing, unreadable or incomplete
EXIT_BATCH = 5          # example batch unreadable or not matching the checkpoint
EXIT_OUTPUT = 6         # output cannot be written
EXIT_DEVICE = 7         # requested device/precision unavailable


class PredictError(Exception):
    """A failure with its exit code; the message is printed as one line."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m graphcast_api.predict",
                                     description="Run a GraphCast rollout on an example batch.")
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="official checkpoint .npz (params/*.npz)")
    parser.add_argument("--stats-dir", type=Path, required=True,
                        help=f"directory with {', '.join(STATS_FILES)}")
    parser.add_argument("--example-batch", type=Path, required=True,
                        help="NetCDF in the official example-batch layout")
    parser.add_argument("--out", type=Path, required=True, help="predictions NetCDF to write")
    parser.add_argument("--steps", type=int, default=4, help="6-hour steps (default 4)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default=None,
                        help="default: the faster one on this device")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="default: cuda when available, else cpu")
    return parser


def split_example_batch(batch, steps: int, forcing_variables: Sequence[str]):
    """(inputs with 2 frames, forcings at the `steps` target frames) from an example batch."""
    if "datetime" not in batch.coords:
        raise PredictError(EXIT_BATCH, "example batch lacks the 'datetime' coordinate")
    if batch.sizes.get("time", 0) < 2 + steps:
        raise PredictError(EXIT_BATCH, f"example batch has {batch.sizes.get('time', 0)} time "
                                       f"frames; 2 inputs + {steps} target frames are needed")
    if "batch" not in batch.dims:
        batch = batch.expand_dims("batch")
    last_input_time = batch["time"].values[1]
    inputs = batch.isel(time=[0, 1])
    inputs = inputs.assign_coords(time=inputs["time"].values - last_input_time)
    targets = batch.isel(time=slice(2, 2 + steps))
    present = [v for v in forcing_variables if v in targets.data_vars]
    if not present:
        return inputs, None
    return inputs, targets[present].assign_coords(time=targets["time"].values - last_input_time)


def _write_atomically(dataset, out: Path) -> None:
    """Write NetCDF to a temporary file beside `out`, then rename it into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = new_temporary_file(out.parent, ".nc.tmp")
    try:
        dataset.to_netcdf(temporary)
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace) -> None:
    """Load, forecast, write; raise PredictError on any expected failure."""
    import xarray as xr

    from graphcast_api.engine import Forecaster, ForecastInputError
    from graphcast_api.engine.checkpoint import CheckpointError, load_checkpoint
    from graphcast_api.engine.stats import StatsError, load_stats

    if args.steps < 1:
        raise PredictError(EXIT_USAGE, f"--steps must be at least 1, got {args.steps}")
    try:
        checkpoint = load_checkpoint(args.checkpoint)
    except CheckpointError as error:
        raise PredictError(EXIT_CHECKPOINT, str(error)) from error
    try:
        stats = load_stats(args.stats_dir, checkpoint.task_config)
    except StatsError as error:
        raise PredictError(EXIT_STATS, str(error)) from error
    try:
        batch = xr.load_dataset(args.example_batch, decode_timedelta=True)
    except (OSError, ValueError) as error:
        raise PredictError(EXIT_BATCH, f"cannot read example batch {args.example_batch}: "
                                       f"{error}") from error
    inputs, forcings = split_example_batch(batch, args.steps,
                                           checkpoint.task_config.forcing_variables)
    stem = args.checkpoint.stem
    try:
        forecaster = Forecaster(checkpoint, stats, name=stem.split(" - ")[0],
                                precision=args.precision, device=args.device)
    except ValueError as error:
        raise PredictError(EXIT_DEVICE, str(error)) from error
    try:
        prediction = forecaster.forecast(inputs, args.steps, forcings)
    except ForecastInputError as error:
        raise PredictError(EXIT_BATCH, f"example batch does not fit the checkpoint: "
                                       f"{error}") from error
    try:
        _write_atomically(prediction, args.out)
    except OSError as error:
        raise PredictError(EXIT_OUTPUT, f"cannot write {args.out}: {error}") from error


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except PredictError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.code
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
