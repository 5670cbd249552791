"""`python -m graphcast_api serve`: run the API service with uvicorn.

Options come from the command line, else from `GRAPHCAST_API_*` environment variables,
else from the project's `.env` file, else from the defaults below. The server starts at
once (`/health` answers `loading`) and loads the model in the background.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from dotenv import dotenv_values

from graphcast_api.service.app import (
    DEFAULT_MAX_BODY_BYTES, ServiceLimits, create_app, set_model,
)
from graphcast_api.service.model_card import Forecaster
from graphcast_contract.project import PROJECT_ROOT
from graphcast_contract.variables import STATS_FILES
EXIT_BAD_CONFIG = 2
EXIT_LOAD_FAILED = 3
EXIT_CANNOT_LISTEN = 4
ENV = {  # option -> (environment variable, default)
    "checkpoint": ("GRAPHCAST_API_CHECKPOINT", None),
    "stats_dir": ("GRAPHCAST_API_STATS_DIR", None),
    "host": ("GRAPHCAST_API_HOST", "127.0.0.1"),
    "port": ("GRAPHCAST_API_PORT", "8001"),
    "precision": ("GRAPHCAST_API_PRECISION", None),
    "device": ("GRAPHCAST_API_DEVICE", None),
    "max_body_mb": ("GRAPHCAST_API_MAX_BODY_MB", None),
    "queue_wait_s": ("GRAPHCAST_API_QUEUE_WAIT_S", "300"),
}
TOKEN_ENV = "GRAPHCAST_API_TOKEN"

log = logging.getLogger("graphcast_api.serve")


@dataclass(frozen=True)
class ServeSettings:
    """Everything `serve` needs, resolved."""

    checkpoint: Path
    stats_dir: Path
    host: str
    port: int
    precision: str | None
    device: str | None
    limits: ServiceLimits


class ConfigError(ValueError):
    """A missing or invalid option; the message says which."""


class Stopped(Exception):
    """SIGTERM, re-raised by uvicorn once it has shut down gracefully."""


def raise_stopped(*_: object) -> None:
    raise Stopped


def add_commands(subcommands: argparse._SubParsersAction) -> None:
    """Register the `serve` subcommand."""
    parser = subcommands.add_parser(
        "serve", help="serve a GraphCast checkpoint over HTTP (docs/api.md)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    option_help = {
        "checkpoint": "official checkpoint file (.npz)",
        "stats_dir": f"folder with {', '.join(STATS_FILES)}",
        "host": "address to bind (default 127.0.0.1: this machine only)",
        "port": "TCP port (default 8001)",
        "precision": "inference precision, passed to the engine (e.g. fp32, bf16)",
        "device": "torch device, passed to the engine (e.g. cpu, cuda)",
        "max_body_mb": "largest request body in MiB (default 3072: a 0.25-degree payload)",
        "queue_wait_s": "longest wait for the forecast queue before 503 (default 300)",
    }
    for option, text in option_help.items():
        parser.add_argument(f"--{option.replace('_', '-')}", dest=option,
                            help=f"{text}; env {ENV[option][0]}")
    parser.set_defaults(run=run_serve)


def resolve_settings(args: argparse.Namespace) -> ServeSettings:
    """Command line, else environment (after reading `.env`), else defaults."""
    environment = {**dotenv_values(PROJECT_ROOT / ".env"), **os.environ}
    value = {option: getattr(args, option, None) or environment.get(env) or default
             for option, (env, default) in ENV.items()}
    for option in ("checkpoint", "stats_dir"):
        if not value[option]:
            raise ConfigError(f"--{option.replace('_', '-')} (or {ENV[option][0]}) is required")
    checkpoint, stats_dir = Path(value["checkpoint"]), Path(value["stats_dir"])
    if not checkpoint.is_file():
        raise ConfigError(f"checkpoint {checkpoint} is not a file")
    missing = [name for name in STATS_FILES if not (stats_dir / name).is_file()]
    if missing:
        raise ConfigError(f"stats folder {stats_dir} lacks {', '.join(missing)}")
    max_body_mb = value["max_body_mb"]
    limits = ServiceLimits(
        max_body_bytes=(int(positive("max_body_mb", max_body_mb) * 1024**2) if max_body_mb
                        else DEFAULT_MAX_BODY_BYTES),
        queue_wait_s=positive("queue_wait_s", value["queue_wait_s"]),
        token=environment.get(TOKEN_ENV) or None,
    )
    return ServeSettings(checkpoint, stats_dir, value["host"],
                         int(positive("port", value["port"])), value["precision"],
                         value["device"], limits)


def positive(option: str, text: str) -> float:
    """`text` as a positive number; ConfigError naming `option` otherwise."""
    try:
        number = float(text)
    except ValueError:
        number = -1.0
    if not number > 0:
        raise ConfigError(f"--{option.replace('_', '-')} must be a positive number, got {text!r}")
    return number


def load_forecaster(settings: ServeSettings) -> Forecaster:
    """Load the checkpoint and build the model's graphs (imports torch)."""
    from graphcast_api.engine import Forecaster as EngineForecaster

    return EngineForecaster.from_files(settings.checkpoint, settings.stats_dir,
                                       precision=settings.precision, device=settings.device)


def run_serve(args: argparse.Namespace) -> int:
    """Serve until interrupted. Exit 0 on shutdown, 2 for bad options, 3 if loading fails,
    4 if the address cannot be bound."""
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = resolve_settings(args)
    except ConfigError as error:
        log.error("%s", error)
        return EXIT_BAD_CONFIG
    app = create_app(settings.limits)
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
        return EXIT_CANNOT_LISTEN
    except (KeyboardInterrupt, Stopped):
        log.info("stopped")
    return EXIT_LOAD_FAILED if failed.is_set() else 0
