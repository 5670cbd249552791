"""`python -m graphcast_api serve`: run the API service with uvicorn.

Options come from the command line, else from `GRAPHCAST_API_*` environment variables,
else from the project's `.env` file, else from their defaults (graphcast_api/settings.py).
The server starts at once (`/health` answers `loading`) and loads the model in the
background.
"""
from __future__ import annotations

import argparse
import logging
import signal
import threading

import uvicorn

from graphcast_api.service.app import ServiceLimits, create_app, set_model
from graphcast_api.service.model_card import Forecaster
from graphcast_api.settings import (
    DEFAULT_MAX_BODY_MB, ENV, ServiceSettings, SettingsError, load_service_settings,
)
from graphcast_contract.errors import ExitCode, exit_code_help
from graphcast_contract.variables import STATS_FILES

EXIT_CODES = (ExitCode.INTERNAL, ExitCode.USAGE, ExitCode.MODEL_FAILED, ExitCode.CANNOT_LISTEN)

log = logging.getLogger("graphcast_api.serve")


class Stopped(Exception):
    """SIGTERM, re-raised by uvicorn once it has shut down gracefully."""


def raise_stopped(*_: object) -> None:
    raise Stopped


def add_commands(subcommands: argparse._SubParsersAction) -> None:
    """Register the `serve` subcommand."""
    parser = subcommands.add_parser(
        "serve", help="serve a GraphCast checkpoint over HTTP (docs/api.md)",
        description=__doc__, epilog=exit_code_help(*EXIT_CODES),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    option_help = {
        "checkpoint": "official checkpoint file (.npz)",
        "stats_dir": f"folder with {', '.join(STATS_FILES)}",
        "host": "address to bind (default 127.0.0.1: this machine only)",
        "port": "TCP port (default 8001)",
        "precision": "inference precision, passed to the engine (fp32 or bf16)",
        "device": "torch device, passed to the engine (e.g. cpu, cuda)",
        "max_body_mb": f"largest request body in MiB (default {DEFAULT_MAX_BODY_MB}: "
                       "a 0.25-degree payload)",
        "queue_wait_s": "longest wait for the forecast queue before 503 (default 300)",
    }
    for option, text in option_help.items():
        parser.add_argument(f"--{option.replace('_', '-')}", dest=option,
                            help=f"{text}; env {ENV[option][0]}")
    parser.set_defaults(run=run_serve)


def resolve_settings(args: argparse.Namespace) -> ServiceSettings:
    """The settings (see graphcast_api.settings), with the checkpoint and statistics present."""
    settings = load_service_settings(args)
    if settings.checkpoint is None or settings.stats_dir is None:
        option = "checkpoint" if settings.checkpoint is None else "stats_dir"
        raise SettingsError(f"--{option.replace('_', '-')} (or {ENV[option][0]}) is required")
    if not settings.checkpoint.is_file():
        raise SettingsError(f"checkpoint {settings.checkpoint} is not a file")
    missing = [name for name in STATS_FILES if not (settings.stats_dir / name).is_file()]
    if missing:
        raise SettingsError(f"stats folder {settings.stats_dir} lacks {', '.join(missing)}")
    return settings


def load_forecaster(settings: ServiceSettings) -> Forecaster:
    """Load the checkpoint and build the model's graphs (imports torch)."""
    from graphcast_api.engine import Forecaster as EngineForecaster

    return EngineForecaster.from_files(settings.checkpoint, settings.stats_dir,
                                       precision=settings.precision, device=settings.device,
                                       cache_dir=settings.cache_dir, compile=settings.compile)


def run_serve(args: argparse.Namespace) -> int:
    """Serve until interrupted; the exit code says how it ended (EXIT_CODES)."""
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = resolve_settings(args)
    except SettingsError as error:
        log.error("%s", error)
        return ExitCode.USAGE
    app = create_app(ServiceLimits(max_body_bytes=settings.max_body_bytes,
                                   queue_wait_s=settings.queue_wait_s, token=settings.token))
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port,
                                           log_level="info"))
    failed = threading.Event()

    def load() -> None:
        try:
            model = load_forecaster(settings)
        except Exception:
            log.exception("could not load %s", settings.checkpoint)
            failed.set()
            server.should_exit = True
            return
        set_model(app, model)
        log.info("serving %s (%s, %s)", model.name, model.precision, model.device)

    threading.Thread(target=load, name="load-model", daemon=True).start()
    log.info("loading %s; listening on http://%s:%d", settings.checkpoint, settings.host,
             settings.port)
    signal.signal(signal.SIGTERM, raise_stopped)
    try:
        server.run()
    except SystemExit:  # uvicorn's way to report a failed start (logged above)
        log.error("could not listen on %s:%d", settings.host, settings.port)
        return ExitCode.CANNOT_LISTEN
    except (KeyboardInterrupt, Stopped):
        log.info("stopped")
    return ExitCode.MODEL_FAILED if failed.is_set() else ExitCode.OK
