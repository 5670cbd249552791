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
import sys
import threading
from pathlib import Path

import uvicorn

from graphcast_api.service.app import ServiceLimits, create_app, set_model
from graphcast_api.service.header_deadline import with_header_deadline
from graphcast_api.service.model_card import Forecaster
from graphcast_api.settings import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_HOST,
    DEFAULT_MAX_SITE_NAME_CHARS,
    DEFAULT_MAX_SITES,
    DEFAULT_MAX_VALUES,
    DEFAULT_PORT,
    DEFAULT_QUEUE_SLOTS,
    DEFAULT_QUEUE_WAIT_S,
    DEVICES,
    ENV,
    PRECISIONS,
    CacheFolderUnwritable,
    DeviceUnavailable,
    ServiceSettings,
    SettingsError,
    load_service_settings,
    use_kernel_cache,
)
from graphcast_contract.errors import ExitCode, exit_code_help
from graphcast_contract.log_files import LOG_FORMAT, rotating_file_handler
from graphcast_contract.urls import is_loopback_host
from graphcast_contract.variables import STATS_FILES

EXIT_CODES = (ExitCode.INTERNAL, ExitCode.USAGE, ExitCode.OUTPUT_FAILED, ExitCode.MODEL_FAILED,
              ExitCode.CANNOT_LISTEN, ExitCode.DEVICE_UNAVAILABLE)

log = logging.getLogger("graphcast_api.serve")

MIN_TOKEN_CHARS = 16
# Open connections uvicorn accepts (beyond: a plain 503). Connections that are not admitted
# to the queue hold little (uvicorn stops reading their body). Each one counts, also one that
# has sent nothing: such a connection is closed after --header-timeout-s (header_deadline.py),
# an idle one between requests after KEEP_ALIVE_S.
MAX_CONNECTIONS = 64
KEEP_ALIVE_S = 5  # uvicorn's default, stated: idle keep-alive connections count too


class ModelFilesMissing(Exception):
    """The named checkpoint is not a file, or the statistics folder lacks a file: exit code
    MODEL_FAILED, as `predict` gives for the same files."""


class Stopped(Exception):
    """SIGTERM, re-raised by uvicorn once it has shut down gracefully."""


def raise_stopped(*_: object) -> None:
    raise Stopped


class SignalledServer(uvicorn.Server):
    """uvicorn's server, noting the signal that stopped it. uvicorn raises that signal again
    after its graceful shutdown, but a signal the process was started ignoring (SIGINT for
    a command put in the background by a script, or under nohup) is ignored again then, so
    the re-raise alone cannot tell that the server was stopped."""

    stopped_by: int | None = None

    def handle_exit(self, sig: int, frame: object) -> None:
        self.stopped_by = sig
        super().handle_exit(sig, frame)


def add_commands(subcommands: argparse._SubParsersAction) -> None:
    """Register the `serve` subcommand."""
    parser = subcommands.add_parser(
        "serve", help="serve a GraphCast checkpoint over HTTP (docs/api.md)",
        description=__doc__, epilog=exit_code_help(*EXIT_CODES),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    option_help = {
        "checkpoint": "official checkpoint file (.npz)",
        "stats_dir": f"folder with {', '.join(STATS_FILES)}",
        "host": f"address to bind (default {DEFAULT_HOST}: this machine only)",
        "port": f"TCP port (default {DEFAULT_PORT})",
        "precision": f"inference precision, passed to the engine ({' or '.join(PRECISIONS)})",
        "device": f"torch device, passed to the engine ({', '.join(DEVICES)} or cuda:N)",
        "max_body_mb": "largest request body in MiB (default: the loaded model's full "
                       "request plus a margin)",
        "queue_wait_s": "longest wait for the forecast queue before 503 "
                        f"(default {DEFAULT_QUEUE_WAIT_S:g})",
        "queue_slots": "forecasts that may wait, body read, while one runs "
                       f"(default {DEFAULT_QUEUE_SLOTS})",
        "body_timeout_s": "longest read of a request body, which holds a queue slot, before "
                          f"408 (default {DEFAULT_BODY_TIMEOUT_S:g})",
        "header_timeout_s": "longest wait for a request's headers before its connection is "
                            f"closed (default {DEFAULT_HEADER_TIMEOUT_S:g})",
        "max_sites": f"most sites in one forecast (default {DEFAULT_MAX_SITES})",
        "max_site_name_chars": "longest site name, characters "
                               f"(default {DEFAULT_MAX_SITE_NAME_CHARS})",
        "max_values": "most values (sites x variables x lead times) in one reply "
                      f"(default {DEFAULT_MAX_VALUES})",
        "log_file": "log to this file, rotated at 5 MB, 5 kept; stderr then gets warnings and "
                    "errors only (default: everything to stderr)",
    }
    for option, text in option_help.items():
        parser.add_argument(f"--{option.replace('_', '-')}", dest=option,
                            help=f"{text}; env {ENV[option][0]}")
    parser.add_argument("--insecure", dest="insecure", action="store_const", const="1",
                        help="serve a non-loopback address without a token of at least "
                             f"{MIN_TOKEN_CHARS} characters (a warning is logged); "
                             f"env {ENV['insecure'][0]}=1")
    parser.set_defaults(run=run_serve)


def resolve_settings(args: argparse.Namespace) -> ServiceSettings:
    """The settings (see graphcast_api.settings), with the checkpoint and statistics named."""
    settings = load_service_settings(args)
    if settings.checkpoint is None or settings.stats_dir is None:
        option = "checkpoint" if settings.checkpoint is None else "stats_dir"
        raise SettingsError(f"--{option.replace('_', '-')} (or {ENV[option][0]}) is required")
    return settings


def check_model_files(settings: ServiceSettings) -> None:
    """ModelFilesMissing unless the checkpoint is a file and the statistics folder holds
    every statistics file: checked before the server starts, so that it does not listen
    only to fail."""
    if not settings.checkpoint.is_file():
        raise ModelFilesMissing(f"checkpoint {settings.checkpoint} is not a file")
    missing = [name for name in STATS_FILES if not (settings.stats_dir / name).is_file()]
    if missing:
        raise ModelFilesMissing(f"stats folder {settings.stats_dir} lacks "
                                f"{', '.join(missing)}")


def check_exposure(settings: ServiceSettings) -> str | None:
    """Refuse (SettingsError) to serve a non-loopback address with every route open: a token
    of at least MIN_TOKEN_CHARS characters is needed there, unless `insecure` is set; then the
    warning to log is returned."""
    if is_loopback_host(settings.host):
        return None
    token = settings.token or ""
    if len(token) >= MIN_TOKEN_CHARS:
        return None
    problem = "without a token" if not token else f"with a token of {len(token)} characters"
    if settings.insecure:
        return (f"serving {settings.host} {problem} (--insecure): anyone who can reach this "
                "address can use the service")
    raise SettingsError(f"--host {settings.host} is not a loopback address: set "
                        f"{ENV['token'][0]} (at least {MIN_TOKEN_CHARS} characters) or pass "
                        f"--insecure ({ENV['insecure'][0]}=1); refusing to serve {problem}")


def setup_logging(log_file: Path | None) -> None:
    """Log to stderr; when `log_file` is given, everything goes to that file, rotated like the
    job's log, and stderr keeps warnings and errors only (whatever captures it stays small).

    uvicorn's own loggers propagate here (serve passes uvicorn no logging configuration)."""
    console = logging.StreamHandler(sys.stderr)
    handlers: list[logging.Handler] = [console]
    if log_file is not None:
        try:
            handlers.append(rotating_file_handler(log_file))
        except OSError as error:
            raise SettingsError(f"--log-file {log_file}: cannot write ({error})") from None
        console.setLevel(logging.WARNING)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, handlers=handlers, force=True)


def load_forecaster(settings: ServiceSettings) -> Forecaster:
    """Load the checkpoint and build the model's graphs (imports torch); DeviceUnavailable,
    before the checkpoint is read, when the device is not usable here."""
    from graphcast_api.engine import Forecaster as EngineForecaster
    from graphcast_api.engine import check_device

    if settings.device is not None:
        check_device(settings.device)
    use_kernel_cache(settings.cache_dir)
    return EngineForecaster.from_files(settings.checkpoint, settings.stats_dir,
                                       precision=settings.precision, device=settings.device,
                                       cache_dir=settings.cache_dir, compile=settings.compile)


def run_serve(args: argparse.Namespace) -> int:
    """Serve until interrupted; the exit code says how it ended (EXIT_CODES)."""
    setup_logging(None)
    try:
        settings = resolve_settings(args)
        setup_logging(settings.log_file)
        warning = check_exposure(settings)
    except SettingsError as error:
        log.error("%s", error)
        return ExitCode.USAGE
    try:
        check_model_files(settings)
    except ModelFilesMissing as error:
        log.error("%s", error)
        return ExitCode.MODEL_FAILED
    try:  # before the server starts (load_forecaster, shared with the backfill, sets it again)
        use_kernel_cache(settings.cache_dir)
    except CacheFolderUnwritable as error:
        log.error("%s", error)
        return ExitCode.OUTPUT_FAILED
    if warning:
        log.warning("%s", warning)
    app = create_app(ServiceLimits(
        max_body_bytes=settings.max_body_bytes, queue_wait_s=settings.queue_wait_s,
        queue_slots=settings.queue_slots, body_timeout_s=settings.body_timeout_s,
        token=settings.token, max_sites=settings.max_sites,
        max_site_name_chars=settings.max_site_name_chars, max_values=settings.max_values))
    server = SignalledServer(uvicorn.Config(app, host=settings.host, port=settings.port,
                                            log_level="info", log_config=None,
                                            limit_concurrency=MAX_CONNECTIONS,
                                            timeout_keep_alive=KEEP_ALIVE_S,
                                            http=with_header_deadline(
                                                settings.header_timeout_s)))
    failed: list[ExitCode] = []  # the code of a failed load

    def load() -> None:
        try:
            model = load_forecaster(settings)
        except DeviceUnavailable as error:
            log.error("%s", error)
            failed.append(ExitCode.DEVICE_UNAVAILABLE)
        except Exception:
            log.exception("could not load %s", settings.checkpoint)
            failed.append(ExitCode.MODEL_FAILED)
        else:
            set_model(app, model)
            log.info("serving %s (%s, %s)", model.name, model.precision, model.device)
            return
        server.should_exit = True

    threading.Thread(target=load, name="load-model", daemon=True).start()
    log.info("loading %s; listening on http://%s:%d", settings.checkpoint, settings.host,
             settings.port)
    signal.signal(signal.SIGTERM, raise_stopped)
    interrupted = False
    try:
        server.run()
    except SystemExit:  # uvicorn's way to report a failed start (logged above)
        log.error("could not listen on %s:%d", settings.host, settings.port)
        return ExitCode.CANNOT_LISTEN
    except (KeyboardInterrupt, Stopped):  # the signal again, or one before uvicorn's handlers
        interrupted = True
    if interrupted or server.stopped_by is not None:
        log.info("stopped")
    return failed[0] if failed else ExitCode.OK
