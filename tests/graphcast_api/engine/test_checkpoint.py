"""Checkpoint reading, validation, writing and random weights in the official layout."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from graphcast_api.engine.checkpoint import (
    CheckpointError,
    load_checkpoint,
    random_checkpoint,
    save_checkpoint,
)
from graphcast_api.engine.configs import PUBLISHED_MODELS


def test_reference_checkpoint_loads_with_its_configs(reference_dir: Path) -> None:
    facts = json.loads((reference_dir / "facts.json").read_text())
    ckpt = load_checkpoint(reference_dir / "params.npz")
    assert dataclasses.asdict(ckpt.model_config) == facts["model_config"]
    task = {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(ckpt.task_config).items()}
    assert task == facts["task_config"]
    assert len(ckpt.params) == facts["num_param_arrays"]
    assert sum(v.size for v in ckpt.params.values()) == facts["num_params"]
    assert ckpt.description.startswith("Random-weight GraphCast reference checkpoint")
    assert all(v.dtype == np.float32 for v in ckpt.params.values())


@pytest.mark.parametrize("model", sorted(PUBLISHED_MODELS))
def test_random_checkpoint_matches_published_manifest(reference_dir: Path, model: str) -> None:
    manifest = json.loads((reference_dir / "param_manifests.json").read_text())["models"][model]
    ckpt = random_checkpoint(model)
    expected = {p["npz_key"].removeprefix("params:"): tuple(p["shape"])
                for p in manifest["params"]}
    assert {k: v.shape for k, v in ckpt.params.items()} == expected
    assert sum(v.size for v in ckpt.params.values()) == manifest["num_params"]
    model_config, task_config = PUBLISHED_MODELS[model]
    assert dataclasses.asdict(model_config) == manifest["model_config"]
    assert {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(task_config).items()} == manifest["task_config"]


def test_written_checkpoint_has_official_keys_and_reads_back(reference_dir: Path,
                                                             tmp_path: Path) -> None:
    original = load_checkpoint(reference_dir / "params.npz")
    path = tmp_path / "copy.npz"
    save_checkpoint(original, path)
    with np.load(reference_dir / "params.npz") as ref, np.load(path) as ours:
        assert sorted(ref.files) == sorted(ours.files)
    again = load_checkpoint(path)
    assert again.model_config == original.model_config
    assert again.task_config == original.task_config
    assert again.license == original.license
    for key, value in original.params.items():
        np.testing.assert_array_equal(again.params[key], value)


def _write_modified(reference_dir: Path, path: Path, change) -> Path:
    with np.load(reference_dir / "params.npz") as data:
        entries = {k: data[k] for k in data.files}
    change(entries)
    np.savez(path, **entries)
    return path


_W0 = "params:mesh_gnn/~_networks_builder/processor_edges_1_mesh_mlp/~/linear_0:w"


@pytest.mark.parametrize("change, message", [
    (lambda e: e.pop(_W0), "missing parameter"),
    (lambda e: e.update({"params:mesh_gnn/extra:w": np.zeros(3, np.float32)}),
     "unexpected parameter"),
    (lambda e: e.update({_W0: np.zeros((95, 32), np.float32)}), "has shape (95, 32)"),
    (lambda e: e.pop("model_config:latent_size"), "model_config:latent_size"),
    (lambda e: e.update({"model_config:latent_size": np.array([32, 32])}),
     "model_config:latent_size has shape (2,), expected a single value"),
    (lambda e: e.update({"model_config:mesh_size": np.array("two")}),
     "model_config:mesh_size is 'two', expected an integer"),
    (lambda e: e.update({"task_config:pressure_levels:x": np.array(5)}),
     "task_config:pressure_levels:x: 'x' is not an item number"),
    (lambda e: e.update({"task_config:pressure_levels:20": np.array(5)}),
     "items of task_config:pressure_levels are numbered"),
    (lambda e: e.update({"task_config:input_duration": np.array("long")}),
     "malformed checkpoint"),
    (lambda e: e.update({"description": np.array(["a", "b"])}), "description has shape"),
])
def test_bad_checkpoint_fails_loudly(reference_dir: Path, tmp_path: Path, change,
                                     message: str) -> None:
    path = _write_modified(reference_dir, tmp_path / "bad.npz", change)
    with pytest.raises(CheckpointError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_checkpoint(path)


def test_unreadable_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "junk.npz"
    path.write_text("not a zip")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(path)


def test_npy_file_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "array.npy"
    np.save(path, np.zeros(3, np.float32))
    with pytest.raises(CheckpointError, match=r"one array \(\.npy\), not the \.npz archive"):
        load_checkpoint(path)
