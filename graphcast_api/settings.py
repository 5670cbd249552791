"""The settings of the inference side (`serve`, `predict`, `bench`), resolved in one place.

Each setting comes from the command line, else the environment, else the project's `.env`
file, else its default. A relative path is the current directory's when given on the command
line, the project's when read from the environment or `.env` (as the job's settings read
them). The engine reads no environment: it gets precision, device, compile
and the graph cache folder as arguments from here, and takes from this module only the
precision names, DeviceUnavailable and the default cache folder. Import-light (no torch, no
FastAPI).
"""
from __future__ import annotations

import argparse
import io
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values

from graphcast_contract.project import project_path, read_env_file, within
from graphcast_contract.wire import bearer_token_problem

# precision name -> the torch dtype it computes in (named, since this module is torch-free)
PRECISIONS = {"fp32": "float32", "bf16": "bfloat16"}
DEVICES = ("cpu", "cuda")  # torch devices the engine runs on; "cuda:N" picks one GPU
DEVICE_NAME = re.compile(r"cpu|cuda(:[0-9]+)?")
DEFAULT_HOST = "127.0.0.1"  # this machine only
DEFAULT_PORT = 8001
MAX_PORT = 65535
MAX_BODY_MB = 1024**2  # 1 TiB: far above any model's request, and a byte count an int holds
DEFAULT_QUEUE_WAIT_S = 300.0  # a forecast not started this long after it arrived gets 503
# A body still arriving this long after its forecast took a slot gets 408 (the slot is freed):
# GraphCast_operational's 689 MB binary body needs 2.3 MB/s.
DEFAULT_BODY_TIMEOUT_S = 300.0
# A connection whose request headers are not complete this long after it opened (or after its
# previous answer) is closed: silent connections would fill uvicorn's connection limit.
DEFAULT_HEADER_TIMEOUT_S = 10.0
# Caps on what one forecast may ask for (docs/api.md, "Limits"): they bound the reply's size.
DEFAULT_MAX_SITES = 1000
DEFAULT_MAX_SITE_NAME_CHARS = 100
DEFAULT_MAX_VALUES = 200_000
# Forecasts admitted while one runs: each holds its decoded inputs in memory.
DEFAULT_QUEUE_SLOTS = 2
# setting -> (environment variable, default); None: unset, or the engine decides.
ENV: dict[str, tuple[str, str | None]] = {
    "checkpoint": ("GRAPHCAST_API_CHECKPOINT", None),
    "stats_dir": ("GRAPHCAST_API_STATS_DIR", None),
    "host": ("GRAPHCAST_API_HOST", DEFAULT_HOST),
    "port": ("GRAPHCAST_API_PORT", str(DEFAULT_PORT)),
    "token": ("GRAPHCAST_API_TOKEN", None),
    "precision": ("GRAPHCAST_API_PRECISION", None),
    "device": ("GRAPHCAST_API_DEVICE", None),
    "max_body_mb": ("GRAPHCAST_API_MAX_BODY_MB", None),  # None: sized from the model
    "queue_wait_s": ("GRAPHCAST_API_QUEUE_WAIT_S", str(DEFAULT_QUEUE_WAIT_S)),
    "queue_slots": ("GRAPHCAST_API_QUEUE_SLOTS", str(DEFAULT_QUEUE_SLOTS)),
    "body_timeout_s": ("GRAPHCAST_API_BODY_TIMEOUT_S", str(DEFAULT_BODY_TIMEOUT_S)),
    "header_timeout_s": ("GRAPHCAST_API_HEADER_TIMEOUT_S", str(DEFAULT_HEADER_TIMEOUT_S)),
    "max_sites": ("GRAPHCAST_API_MAX_SITES", str(DEFAULT_MAX_SITES)),
    "max_site_name_chars": ("GRAPHCAST_API_MAX_SITE_NAME_CHARS",
                            str(DEFAULT_MAX_SITE_NAME_CHARS)),
    "max_values": ("GRAPHCAST_API_MAX_VALUES", str(DEFAULT_MAX_VALUES)),
    "insecure": ("GRAPHCAST_API_INSECURE", None),
    "log_file": ("GRAPHCAST_API_LOG_FILE", None),
    "compile": ("GRAPHCAST_COMPILE", None),
    "cache_dir": ("GRAPHCAST_CACHE_DIR", None),
}
SWITCH_VALUES = {"1": True, "true": True, "yes": True, "on": True,
                 "0": False, "false": False, "no": False, "off": False}


class SettingsError(ValueError):
    """A missing or invalid setting; the message names its option or variable."""


class CacheFolderUnwritable(Exception):
    """The engine's cache folder cannot be created or written (a path under a plain file, a
    read-only home folder): exit code OUTPUT_FAILED, checked before the model loads."""


class DeviceUnavailable(ValueError):
    """A valid device name that this host cannot use (no CUDA GPU, or not that many), or the
    oneDNN product back end where it cannot run: raised by the engine, exit code
    DEVICE_UNAVAILABLE."""


@dataclass(frozen=True)
class ServiceSettings:
    """Every setting of the service and the engine, resolved and typed."""

    checkpoint: Path | None
    stats_dir: Path | None
    host: str
    port: int
    token: str | None
    precision: str | None    # None: the engine picks (bf16 where the hardware is fast)
    device: str | None       # None: the engine picks (cuda when usable, else cpu)
    max_body_bytes: int | None  # None: sized from the loaded model's full request
    queue_wait_s: float
    queue_slots: int         # forecasts that may wait (body read) while one runs
    body_timeout_s: float    # longest read of a body (its forecast's slot is held)
    header_timeout_s: float  # longest wait for a request's headers on a connection
    max_sites: int
    max_site_name_chars: int
    max_values: int          # sites x variables x lead times in one reply
    insecure: bool           # serve a non-loopback address without a strong token
    log_file: Path | None    # rotating log file; None: stderr only
    compile: bool | None     # None: the engine compiles on CPU for full-size meshes
    cache_dir: Path | None   # None: default_cache_dir()


def load_service_settings(args: argparse.Namespace | None = None,
                          env_file: Path | None = None) -> ServiceSettings:
    """Resolve every setting: `args` (its attributes named as in ENV), else the environment,
    else `env_file` (default: `env_file_path()`, the job's too), else the default. Empty
    values count as unset.
    """
    try:
        from_file = dotenv_values(stream=io.StringIO(read_env_file(env_file)))
    except ValueError as exc:  # ENV_FILE names no file; the file is unreadable, not UTF-8
        raise SettingsError(str(exc)) from None
    given = {name: _first_set(getattr(args, name, None)) for name in ENV}
    raw = {name: _first_set(given[name], os.environ.get(variable), from_file.get(variable),
                            default)
           for name, (variable, default) in ENV.items()}

    def path(name: str) -> Path | None:
        """A path setting: the current directory's from the command line, else the
        project's."""
        text = raw[name]
        if text is None:
            return None
        return Path(text).expanduser() if given[name] is not None else project_path(text)

    precision, device, token = raw["precision"], raw["device"], raw["token"]
    problem = bearer_token_problem(token) if token is not None else None
    if problem:
        raise SettingsError(f"{ENV['token'][0]} {problem}")
    if precision is not None and precision not in PRECISIONS:
        raise SettingsError(f"--precision (or {ENV['precision'][0]}) must be one of "
                            f"{', '.join(PRECISIONS)}, got {precision!r}")
    if device is not None and not DEVICE_NAME.fullmatch(device):
        raise SettingsError(f"--device (or {ENV['device'][0]}) must be {', '.join(DEVICES)} "
                            f"or cuda:N, got {device!r}")
    return ServiceSettings(
        checkpoint=path("checkpoint"), stats_dir=path("stats_dir"),
        host=raw["host"], port=whole("port", raw["port"], maximum=MAX_PORT),
        token=token, precision=precision, device=device,
        max_body_bytes=(None if raw["max_body_mb"] is None else int(
            positive("max_body_mb", raw["max_body_mb"], maximum=MAX_BODY_MB) * 1024**2)),
        queue_wait_s=positive("queue_wait_s", raw["queue_wait_s"]),
        queue_slots=whole("queue_slots", raw["queue_slots"], minimum=0),
        body_timeout_s=positive("body_timeout_s", raw["body_timeout_s"]),
        header_timeout_s=positive("header_timeout_s", raw["header_timeout_s"]),
        max_sites=whole("max_sites", raw["max_sites"]),
        max_site_name_chars=whole("max_site_name_chars", raw["max_site_name_chars"]),
        max_values=whole("max_values", raw["max_values"]),
        insecure=bool(_switch("insecure", raw["insecure"])), log_file=path("log_file"),
        compile=_switch("compile", raw["compile"]), cache_dir=path("cache_dir"))


def _first_set(*values: object) -> str | None:
    """The first value that is neither None nor empty, as text."""
    for value in values:
        if value is not None and str(value) != "":
            return str(value)
    return None


def positive(option: str, text: str, maximum: float = math.inf) -> float:
    """`text` as a positive finite number up to `maximum` (`within`, the job's rule too);
    SettingsError naming `option` otherwise."""
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not (number > 0 and within(number, 0, maximum)):
        bound = f" up to {maximum:.15g}" if maximum < math.inf else ""
        raise SettingsError(f"--{option.replace('_', '-')} must be a positive number{bound}, "
                            f"got {text!r}")
    return number


def whole(option: str, text: str, minimum: int = 1, maximum: int | None = None) -> int:
    """`text` as a whole number from `minimum` (to `maximum`); SettingsError naming `option`
    otherwise."""
    try:
        number = int(text)
    except ValueError:
        number = minimum - 1
    if number < minimum or (maximum is not None and number > maximum):
        allowed = (f"from {minimum} to {maximum}" if maximum is not None
                   else f"of at least {minimum}")
        raise SettingsError(f"--{option.replace('_', '-')} must be a whole number {allowed}, "
                            f"got {text!r}")
    return number


def _switch(name: str, text: str | None) -> bool | None:
    """An on/off setting (1/0, true/false, yes/no, on/off); None when unset."""
    if text is None:
        return None
    try:
        return SWITCH_VALUES[text.strip().lower()]
    except KeyError:
        raise SettingsError(f"{ENV[name][0]} must be 1 or 0, got {text!r}") from None


def default_cache_dir() -> Path:
    """The engine's cache folder (built graphs; compiled kernels in `kernels/`) when
    GRAPHCAST_CACHE_DIR is unset or the engine is called without one."""
    return Path.home() / ".cache" / "graphcast_api" / "graphs"


def use_kernel_cache(cache_dir: Path | None) -> Path:
    """Keep torch.compile's kernels (Inductor's on-disk FX graph cache) in `kernels/` of the
    engine's cache folder (None: `default_cache_dir()`), so that a new process or a
    restarted service loads them instead of compiling for a minute. Returns that folder.

    Inductor takes its folder only from TORCHINDUCTOR_CACHE_DIR; the engine reads no
    environment, so the settings side sets it before the engine first compiles.
    CacheFolderUnwritable, naming the folder, if it cannot be created or written.
    """
    root = cache_dir if cache_dir is not None else default_cache_dir()
    folder = root / "kernels"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):  # an existing folder may be read-only
            pass
    except OSError as error:
        raise CacheFolderUnwritable(
            f"cache folder {root} cannot be created or written ({error.strerror or error}); "
            f"set {ENV['cache_dir'][0]} to a writable folder") from None
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    return folder
