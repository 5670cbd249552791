"""What a served model takes and gives, as `GET /v1/model` describes it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphcast_contract.cycles import INPUT_TIMES_HOURS
from graphcast_contract.errors import ConfigError, InvalidReplyError

SURFACE_LEVEL = 0  # the `level` of single-level fields
FieldKey = tuple[str, int]  # (variable, level)


@dataclass(frozen=True)
class Grid:
    """A regular global latitude/longitude grid, latitudes ascending from `lat_first`."""

    n_lat: int
    n_lon: int
    lat_first: float
    lat_step: float
    lon_first: float
    lon_step: float

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_lat, self.n_lon)

    def latitudes(self) -> np.ndarray:
        return self.lat_first + self.lat_step * np.arange(self.n_lat)

    def longitudes(self) -> np.ndarray:
        return self.lon_first + self.lon_step * np.arange(self.n_lon)

    def as_dict(self) -> dict[str, Any]:
        """The contract's `grid` object."""
        return {"n_lat": self.n_lat, "n_lon": self.n_lon, "lat_first": self.lat_first,
                "lat_step": self.lat_step, "lon_first": self.lon_first,
                "lon_step": self.lon_step}

    @classmethod
    def from_coordinates(cls, lat: np.ndarray, lon: np.ndarray) -> "Grid":
        """Describe the grid of ascending `lat` and `lon` (degrees); ValueError if it is
        not regular, not ascending or not global (poles to poles, all longitudes)."""
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        for name, axis in (("latitude", lat), ("longitude", lon)):
            if axis.ndim != 1 or axis.size < 2:
                raise ValueError(f"{name} must be a 1-D coordinate with at least 2 values")
            steps = np.diff(axis)
            if steps[0] <= 0 or not np.allclose(steps, steps[0], rtol=0, atol=1e-4 * steps[0]):
                raise ValueError(f"{name} is not a regular ascending grid")
        lat_step = float(np.mean(np.diff(lat)))
        lon_step = float(np.mean(np.diff(lon)))
        if abs(lat[0] + 90) > 1e-4 or abs(lat[-1] - 90) > 1e-4:
            raise ValueError(f"latitudes span {lat[0]}..{lat[-1]}, not the global -90..90")
        if abs(lon_step * lon.size - 360) > 1e-3:
            raise ValueError(f"{lon.size} longitudes at {lon_step} deg do not cover 360 deg")
        return cls(lat.size, lon.size, -90.0, round(lat_step, 6),
                   float(round(lon[0], 6)), round(lon_step, 6))


def global_grid(step: float) -> Grid:
    """The regular global grid with `step` degrees, latitudes -90..90, longitudes from 0:
    the grid of the models, of the ERA5 store and of the regridder, defined once. An
    infinite step would pass the division test (180 / inf is 0) and give a 1x0 grid."""
    if not (0 < step < np.inf and all(abs(span / step - round(span / step)) <= 1e-9
                             for span in (180, 360))):
        raise ValueError(f"a grid step of {step} deg does not divide 180 and 360 deg")
    return Grid(round(180 / step) + 1, round(360 / step), -90.0, float(step), 0.0, float(step))


@dataclass(frozen=True)
class Target:
    unit: str
    atmospheric: bool


def describe_field(key: FieldKey) -> str:
    """'temperature at 850 hPa', or the name alone at the surface."""
    variable, level = key
    return f"{variable} at {level} hPa" if level else variable


def _typed(obj: dict[str, Any], key: str, kind: type | tuple[type, ...],
           item: type | None = None) -> Any:
    """obj[key], checked to be of `kind` (a list of `item`s when given): a reply with a
    string where a list belongs must be refused, not read character by character.
    bool is an int to Python but never a number here."""
    value = obj[key]
    values = value if item is not None and isinstance(value, list) else [value]
    wanted = item if item is not None and isinstance(value, list) else kind
    for one in values:
        if not isinstance(one, wanted) or (isinstance(one, bool) and wanted is not bool):
            raise TypeError(f"{key} is {type(value).__name__} {value!r:.60}, "
                            f"expected {_kind_name(kind, item)}")
    return value


def _kind_name(kind: type | tuple[type, ...], item: type | None) -> str:
    names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
    return f"{names} of {item.__name__}" if item is not None else names


@dataclass(frozen=True)
class Provenance:
    """What made a forecast (the service's `provenance` object); None where not told."""

    checkpoint_file: str | None = None
    checkpoint_sha256: str | None = None
    precision: str | None = None
    device: str | None = None
    version: str | None = None

    @classmethod
    def from_reply(cls, reply: dict[str, Any], where: str) -> "Provenance":
        """The reply's `provenance` object; an older service without one gives all None,
        but a value that is not a string is refused (InvalidReplyError)."""
        given = reply.get("provenance") or {}
        if not isinstance(given, dict):
            raise InvalidReplyError(f"{where}: provenance is not an object")
        values: dict[str, str | None] = {}
        for name in cls.__dataclass_fields__:
            value = given.get(name)
            if value is not None and not isinstance(value, str):
                raise InvalidReplyError(f"{where}: provenance {name} is not a string: "
                                        f"{value!r}")
            values[name] = value
        return cls(**values)


@dataclass(frozen=True)
class ModelSpec:
    """What the served model needs and produces (from `GET /v1/model`)."""

    model: str
    grid: Grid
    pressure_levels: tuple[int, ...]
    surface_inputs: tuple[str, ...]
    atmospheric_inputs: tuple[str, ...]
    static_inputs: tuple[str, ...]
    targets: dict[str, Target]
    step_hours: int
    max_lead_hours: int
    provenance: Provenance = field(default_factory=Provenance)

    @classmethod
    def from_reply(cls, reply: Any) -> "ModelSpec":
        """Parse a `/v1/model` reply; InvalidReplyError names what is wrong."""
        try:
            if _typed(reply, "input_times_hours", list, int) != list(INPUT_TIMES_HOURS):
                raise InvalidReplyError(f"/v1/model: input_times_hours is not "
                                        f"{list(INPUT_TIMES_HOURS)}; this job supplies "
                                        "exactly two inputs 6 h apart")
            grid = _typed(reply, "grid", dict)
            return cls(
                model=_typed(reply, "model", str),
                grid=Grid(_typed(grid, "n_lat", int), _typed(grid, "n_lon", int),
                          *(float(_typed(grid, key, (int, float))) for key in
                            ("lat_first", "lat_step", "lon_first", "lon_step"))),
                pressure_levels=tuple(_typed(reply, "pressure_levels", list, int)),
                surface_inputs=tuple(_typed(reply, "surface_inputs", list, str)),
                atmospheric_inputs=tuple(_typed(reply, "atmospheric_inputs", list, str)),
                static_inputs=tuple(_typed(reply, "static_inputs", list, str)),
                targets={_typed(t, "name", str): Target(_typed(t, "unit", str),
                                                        _typed(t, "atmospheric", bool))
                         for t in _typed(reply, "targets", list, dict)},
                step_hours=_typed(reply, "step_hours", int),
                max_lead_hours=_typed(reply, "max_lead_hours", int),
                provenance=Provenance.from_reply(reply, "/v1/model"),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidReplyError(f"/v1/model reply is incomplete or malformed "
                                    f"({type(exc).__name__}: {exc})") from None

    def input_keys(self) -> list[FieldKey]:
        """Every time-dependent input field as (variable, level), level 0 at the surface."""
        keys = [(name, SURFACE_LEVEL) for name in self.surface_inputs]
        keys += [(name, level) for name in self.atmospheric_inputs
                 for level in self.pressure_levels]
        return keys

    def check_wanted(self, variables: tuple[FieldKey, ...], lead_hours: tuple[int, ...]) -> None:
        """ConfigError unless the model forecasts these variables at these lead times."""
        for name, level in variables:
            target = self.targets.get(name)
            if target is None:
                raise ConfigError(f"variable {name!r} is not a target of {self.model} "
                                  f"(targets: {', '.join(self.targets)})")
            if target.atmospheric and level not in self.pressure_levels:
                raise ConfigError(f"variable {name!r} needs a level among "
                                  f"{list(self.pressure_levels)} (write {name}@850)")
            if not target.atmospheric and level:
                raise ConfigError(f"variable {name!r} is single-level; drop '@{level}'")
        for hours in lead_hours:
            if hours % self.step_hours or hours > self.max_lead_hours:
                raise ConfigError(f"lead time {hours} h is not a multiple of {self.step_hours} h "
                                  f"up to {self.max_lead_hours} h")
