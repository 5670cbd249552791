"""Official GraphCast checkpoint files (`params/*.npz`): read, validate, write, randomise.

Layout of an official file (a `numpy.savez` of the flattened `graphcast.CheckPoint`):
`params:<haiku module>:<name>` float32 arrays, `model_config:<field>` scalars,
`task_config:<field>` scalars or `task_config:<field>:<i>` tuple items, `description`, `license`.
"""
from __future__ import annotations

import dataclasses
import typing
import zipfile
from pathlib import Path

import numpy as np

from graphcast_api.engine.configs import (
    NODE_STRUCT_FEATURES,
    PUBLISHED_MODELS,
    ModelConfig,
    TaskConfig,
)

EDGE_STRUCT_FEATURES = 4
_BUILDER = "~_networks_builder"


class CheckpointError(ValueError):
    """The checkpoint file is unreadable or does not match the GraphCast architecture."""


@dataclasses.dataclass
class CheckPoint:
    """Parameters (keyed `<module>:<name>`, float32) with the configs they were trained for."""

    params: dict[str, np.ndarray]
    model_config: ModelConfig
    task_config: TaskConfig
    description: str
    license: str


def _mlp_shapes(module: str, in_size: int, hidden: int, out_size: int, hidden_layers: int,
                layer_norm: bool) -> dict[str, tuple[int, ...]]:
    """Shapes of one haiku MLP (`<module>_mlp/~/linear_k`) and its optional LayerNorm."""
    sizes = [in_size] + [hidden] * hidden_layers + [out_size]
    shapes: dict[str, tuple[int, ...]] = {}
    for k in range(hidden_layers + 1):
        shapes[f"{module}_mlp/~/linear_{k}:w"] = (sizes[k], sizes[k + 1])
        shapes[f"{module}_mlp/~/linear_{k}:b"] = (sizes[k + 1],)
    if layer_norm:
        shapes[f"{module}_layer_norm:scale"] = (out_size,)
        shapes[f"{module}_layer_norm:offset"] = (out_size,)
    return shapes


def expected_param_shapes(model_config: ModelConfig,
                          task_config: TaskConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter (key without the `params:` prefix) and its shape for these configs."""
    latent, layers = model_config.latent_size, model_config.hidden_layers
    node_in = task_config.num_grid_input_channels + NODE_STRUCT_FEATURES
    mlps: list[tuple[str, str, int, int, bool]] = [
        ("grid2mesh_gnn", "encoder_edges_grid2mesh", EDGE_STRUCT_FEATURES, latent, True),
        ("grid2mesh_gnn", "encoder_nodes_grid_nodes", node_in, latent, True),
        ("grid2mesh_gnn", "encoder_nodes_mesh_nodes", node_in, latent, True),
        ("grid2mesh_gnn", "processor_edges_0_grid2mesh", 3 * latent, latent, True),
        ("grid2mesh_gnn", "processor_nodes_0_grid_nodes", latent, latent, True),
        ("grid2mesh_gnn", "processor_nodes_0_mesh_nodes", 2 * latent, latent, True),
        ("mesh_gnn", "encoder_edges_mesh", EDGE_STRUCT_FEATURES, latent, True),
    ]
    for step in range(model_config.gnn_msg_steps):
        mlps += [("mesh_gnn", f"processor_edges_{step}_mesh", 3 * latent, latent, True),
                 ("mesh_gnn", f"processor_nodes_{step}_mesh_nodes", 2 * latent, latent, True)]
    mlps += [
        ("mesh2grid_gnn", "encoder_edges_mesh2grid", EDGE_STRUCT_FEATURES, latent, True),
        ("mesh2grid_gnn", "processor_edges_0_mesh2grid", 3 * latent, latent, True),
        ("mesh2grid_gnn", "processor_nodes_0_grid_nodes", 2 * latent, latent, True),
        ("mesh2grid_gnn", "processor_nodes_0_mesh_nodes", latent, latent, True),
        ("mesh2grid_gnn", "decoder_nodes_grid_nodes", latent, task_config.num_output_channels,
         False),
    ]
    shapes: dict[str, tuple[int, ...]] = {}
    for gnn, module, in_size, out_size, layer_norm in mlps:
        for key, shape in _mlp_shapes(module, in_size, latent, out_size, layers,
                                      layer_norm).items():
            shapes[f"{gnn}/{_BUILDER}/{key}"] = shape
    return shapes


def check_params(params: dict[str, np.ndarray], model_config: ModelConfig,
                 task_config: TaskConfig) -> None:
    """Raise CheckpointError on any missing, extra or mis-shaped parameter array."""
    expected = expected_param_shapes(model_config, task_config)
    missing = sorted(set(expected) - set(params))
    extra = sorted(set(params) - set(expected))
    wrong = sorted(f"{k} has shape {tuple(params[k].shape)}, expected {expected[k]}"
                   for k in set(expected) & set(params)
                   if tuple(params[k].shape) != expected[k])
    problems = ([f"missing parameter(s): {', '.join(missing)}"] if missing else []) + \
        ([f"unexpected parameter(s): {', '.join(extra)}"] if extra else []) + wrong
    if problems:
        raise CheckpointError(f"checkpoint does not match the GraphCast architecture: "
                              f"{'; '.join(problems)}")


def _scalar(key: str, value: np.ndarray) -> object:
    """A 0-d array from the file as a Python value."""
    if value.shape != ():
        raise CheckpointError(f"checkpoint entry {key} has shape {value.shape}, expected a "
                              "single value")
    return value.item()


_KINDS = {int: "an integer", float: "a number", str: "a string"}


def _typed(key: str, value: object, kind: type) -> object:
    """A config value from the file as its field's `kind` (int, float or str)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is float and number:
        return float(value)
    if kind is int and number and float(value).is_integer():
        return int(value)
    if kind is str and isinstance(value, str):
        return value
    raise CheckpointError(f"checkpoint entry {key} is {value!r}, expected {_KINDS[kind]}")


def _field_kind(cls: type, name: str) -> tuple[type, bool]:
    """(int, float or str; whether a tuple of those) of a config dataclass field."""
    hint = typing.get_type_hints(cls)[name]
    if typing.get_origin(hint) is tuple:
        return typing.get_args(hint)[0], True
    return next(arg for arg in typing.get_args(hint) or (hint,) if arg is not type(None)), False


def _tuple_items(entries: dict[str, np.ndarray], key: str, kind: type) -> tuple:
    """The items `<key>:0`, `<key>:1`, ... in order (empty if there are none)."""
    items = {}
    for name, value in entries.items():
        if name.startswith(key + ":"):
            index = name.removeprefix(key + ":")
            if not index.isdigit():
                raise CheckpointError(f"checkpoint entry {name}: {index!r} is not an item "
                                      "number")
            items[int(index)] = _typed(name, _scalar(name, value), kind)
    if sorted(items) != list(range(len(items))):
        raise CheckpointError(f"checkpoint items of {key} are numbered {sorted(items)}, "
                              f"expected 0 to {len(items) - 1}")
    return tuple(items[i] for i in range(len(items)))


def _read_config(entries: dict[str, np.ndarray], prefix: str, cls: type) -> object:
    """Rebuild a config dataclass from `<prefix>:<field>` scalars and `<prefix>:<field>:<i>`
    tuple items, each of its field's type."""
    values: dict[str, object] = {}
    for field in dataclasses.fields(cls):
        key = f"{prefix}:{field.name}"
        kind, is_tuple = _field_kind(cls, field.name)
        if is_tuple:
            if key in entries:
                raise CheckpointError(f"checkpoint entry {key} is a single value; expected "
                                      f"items {key}:0, {key}:1, ...")
            items = _tuple_items(entries, key, kind)
            if items:
                values[field.name] = items
        elif key in entries:
            values[field.name] = _typed(key, _scalar(key, entries[key]), kind)
        if field.name not in values and field.default is dataclasses.MISSING:
            raise CheckpointError(f"checkpoint has no {key}")
    return cls(**values)


def load_checkpoint(path: Path) -> CheckPoint:
    """Read and validate an official GraphCast checkpoint `.npz`; CheckpointError, one line,
    for any other file."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded as data:
                entries = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error}") from error
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise CheckpointError(f"cannot read checkpoint {path}: one array (.npy), not the "
                              ".npz archive of a checkpoint")
    try:
        return _checkpoint(entries)
    except CheckpointError:
        raise
    except (TypeError, ValueError) as error:  # whatever _checkpoint's checks did not foresee
        raise CheckpointError(f"malformed checkpoint {path}: {error}") from error


def _checkpoint(entries: dict[str, np.ndarray]) -> CheckPoint:
    """The checkpoint of a file's entries, validated."""
    model_config = _read_config(entries, "model_config", ModelConfig)
    task_config = _read_config(entries, "task_config", TaskConfig)
    params = {k.removeprefix("params:"): v for k, v in entries.items()
              if k.startswith("params:")}
    check_params(params, model_config, task_config)
    bad_dtype = sorted(k for k, v in params.items() if not np.issubdtype(v.dtype, np.floating))
    if bad_dtype:
        raise CheckpointError(f"non-float parameter(s): {', '.join(bad_dtype)}")
    text = {key: str(_scalar(key, entries.get(key, np.array(""))))
            for key in ("description", "license")}
    return CheckPoint(
        params={k: v.astype(np.float32, copy=False) for k, v in params.items()},
        model_config=model_config, task_config=task_config,
        description=text["description"], license=text["license"])


def _flatten_config(prefix: str, config: object) -> dict[str, np.ndarray]:
    """Config dataclass → `<prefix>:<field>[:<i>]` entries (None fields are left out)."""
    entries: dict[str, np.ndarray] = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, tuple):
            for i, item in enumerate(value):
                entries[f"{prefix}:{field.name}:{i}"] = np.array(item)
        elif value is not None:
            entries[f"{prefix}:{field.name}"] = np.array(value)
    return entries


def save_checkpoint(checkpoint: CheckPoint, path: Path) -> None:
    """Write a checkpoint in the official `.npz` layout (readable by `graphcast.checkpoint`)."""
    check_params(checkpoint.params, checkpoint.model_config, checkpoint.task_config)
    entries = {f"params:{k}": np.asarray(v, dtype=np.float32)
               for k, v in checkpoint.params.items()}
    entries |= _flatten_config("model_config", checkpoint.model_config)
    entries |= _flatten_config("task_config", checkpoint.task_config)
    entries["description"] = np.array(checkpoint.description)
    entries["license"] = np.array(checkpoint.license)
    with open(path, "wb") as handle:
        np.savez(handle, **entries)


def random_checkpoint(model: str = "GraphCast_small", seed: int = 0,
                      model_config: ModelConfig | None = None,
                      task_config: TaskConfig | None = None) -> CheckPoint:
    """Random weights with the exact names and shapes of a published model (or given configs).

    Weights ~ N(0, 1/fan_in), biases 0, LayerNorm scale 1 and offset 0 (haiku's defaults).
    """
    if model_config is None or task_config is None:
        if model not in PUBLISHED_MODELS:
            raise ValueError(f"unknown model {model!r}; known: {', '.join(PUBLISHED_MODELS)}")
        model_config, task_config = PUBLISHED_MODELS[model]
    rng = np.random.default_rng(seed)
    params: dict[str, np.ndarray] = {}
    for key, shape in expected_param_shapes(model_config, task_config).items():
        if key.endswith(":w"):
            values = rng.standard_normal(shape, dtype=np.float32) / np.sqrt(shape[0])
        elif key.endswith(":scale"):
            values = np.ones(shape, np.float32)
        else:
            values = np.zeros(shape, np.float32)
        params[key] = values.astype(np.float32, copy=False)
    return CheckPoint(params, model_config, task_config,
                      description=f"Random weights with the shapes of {model} (seed {seed}); "
                                  "not a trained model.",
                      license="Random weights, for testing only.")
