"""The engine against the official outputs: step-1 intermediates and 4-step rollouts."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from graphcast_api.engine import Forecaster, ForecastInputError, amx, heap
from graphcast_api.engine import forecaster as forecaster_module
from graphcast_api.engine.network import default_products
from graphcast_api.engine.normalization import unstack
from graphcast_api.settings import DeviceUnavailable
from tests.graphcast_api.engine.tolerance import check_fp32 as _check_fp32
from tests.graphcast_api.engine.tolerance import scale as _scale


def _load(path: Path) -> xr.Dataset:
    return xr.load_dataset(path, decode_timedelta=True)


@pytest.fixture(scope="module")
def inputs(reference_dir: Path) -> xr.Dataset:
    """inputs.nc with the valid times of example_batch.nc as `datetime` (batch, time)."""
    batch = _load(reference_dir / "example_batch.nc")
    data = _load(reference_dir / "inputs.nc")
    return data.assign_coords(datetime=(("batch", "time"),
                                        batch["datetime"].values[:, :2]))


@pytest.fixture(scope="module")
def forcings(reference_dir: Path) -> xr.Dataset:
    return _load(reference_dir / "forcings.nc")


@pytest.fixture(scope="module")
def fp32(reference_dir: Path, stats_dir: Path, tmp_path_factory) -> Forecaster:
    return Forecaster.from_files(reference_dir / "params.npz", stats_dir, precision="fp32",
                                 device="cpu", cache_dir=tmp_path_factory.mktemp("graphs"),
                                 compile=False)


def test_step1_grid_node_features(fp32: Forecaster, inputs, forcings,
                                  reference_dir: Path) -> None:
    ours = fp32.grid_features(fp32._checked_inputs(inputs), forcings.isel(time=[0]))
    with np.load(reference_dir / "debug_step1_grid_node_features.npz") as data:
        np.testing.assert_allclose(ours, data["grid_node_features"], rtol=1e-6, atol=1e-6)


def test_step1_normalized_output(fp32: Forecaster, inputs, forcings,
                                 reference_dir: Path) -> None:
    checked = fp32._checked_inputs(inputs)
    features = fp32.grid_features(checked, forcings.isel(time=[0]))
    outputs = fp32.network(torch.from_numpy(features)).numpy()
    ours = unstack(outputs, fp32._target_template(checked))
    reference = _load(reference_dir / "debug_step1_normalized_output.nc")
    for name in reference.data_vars:
        np.testing.assert_allclose(ours[name].values, reference[name].values, atol=1e-4,
                                   rtol=0, err_msg=name)


def test_fp32_rollout_matches_official(fp32: Forecaster, inputs, forcings,
                                       reference_dir: Path) -> None:
    prediction = fp32.forecast(inputs, 4, forcings)
    assert dict(prediction.sizes) == {"batch": 1, "time": 4, "level": 13, "lat": 19, "lon": 36}
    assert prediction["temperature"].dims == ("batch", "time", "level", "lat", "lon")
    assert prediction["time"].values.astype("timedelta64[h]").astype(int).tolist() == \
        [6, 12, 18, 24]
    assert str(prediction["datetime"].values[0, 0]).startswith("2022-01-01T12:00")
    _check_fp32(prediction, _load(reference_dir / "predictions_fp32.nc"), reference_dir,
                fp32.task_config)


@pytest.mark.slow  # compiling takes most of a minute on the 2-core machine
def test_compiled_fp32_rollout_matches_official(reference_dir: Path, stats_dir: Path, inputs,
                                                forcings, tmp_path: Path) -> None:
    """The default CPU path (torch.compile) gives the same result, and it is what ran.

    The encoder and the decoder are split in two chunks each so that the compiled ones run
    chunked, as they do at full scale (the encoder's chunks add to one buffer of sums in
    place).
    """
    compiled = Forecaster.from_files(reference_dir / "params.npz", stats_dir, precision="fp32",
                                     device="cpu", cache_dir=tmp_path, compile=True,
                                     decode_chunk_nodes=342, encode_chunk_nodes=342)
    assert len(compiled.network._decode_chunks(684)) == 2
    assert len(compiled.network.encoder_chunks.node_starts) == 2
    prediction = compiled.forecast(inputs, 4, forcings)
    assert compiled.network.compiled, "torch.compile failed: the eager fallback ran"
    _check_fp32(prediction, _load(reference_dir / "predictions_fp32.nc"), reference_dir,
                compiled.task_config)
    assert compiled.products == default_products(torch.device("cpu"))


@pytest.mark.parametrize("products, compile", [("matmul", False), ("onednn", False),
                                               ("matmul", True), ("onednn", True)])
def test_every_product_back_end_matches_official(reference_dir: Path, stats_dir: Path,
                                                 inputs, forcings, products: str,
                                                 compile: bool) -> None:
    """Each back end the engine can pick gives the official rollout, and is reported."""
    if products == "onednn" and not torch.backends.mkldnn.is_available():
        pytest.skip("this torch build has no oneDNN")
    forced = Forecaster.from_files(reference_dir / "params.npz", stats_dir, precision="fp32",
                                   device="cpu", compile=compile, products=products)
    assert forced.products == products
    _check_fp32(forced.forecast(inputs, 4, forcings),
                _load(reference_dir / "predictions_fp32.nc"), reference_dir,
                forced.task_config)


def test_unknown_product_back_end_is_rejected(reference_dir: Path, stats_dir: Path) -> None:
    with pytest.raises(ValueError, match="product back end"):
        Forecaster.from_files(reference_dir / "params.npz", stats_dir, precision="fp32",
                              device="cpu", compile=False, products="blas")


@pytest.mark.parametrize("compile", [True, False])
def test_the_cpu_vector_isa_probe_runs_at_set_up_when_compiling(
        reference_dir: Path, stats_dir: Path, tmp_path: Path, compile: bool) -> None:
    """Inductor's per-process probe of the CPU's vector instruction sets (child processes,
    1.45 s on 2 cores) is paid while the model is set up, not by its first forecast."""
    from torch._inductor.cpu_vec_isa import valid_vec_isa_list

    valid_vec_isa_list.cache_clear()
    Forecaster.from_files(reference_dir / "params.npz", stats_dir, precision="fp32",
                          device="cpu", cache_dir=tmp_path, compile=compile)
    assert valid_vec_isa_list.cache_info().currsize == int(compile)


def test_failed_compile_falls_back_to_eager_with_a_warning(
        reference_dir: Path, stats_dir: Path, inputs, forcings, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A compile failure (raised on the first call, as torch.compile's are) is survived."""
    def failing_compile(function, **options):
        def compiled(*args, **kwargs):
            raise RuntimeError("no C++ compiler (stand-in)")
        return compiled

    monkeypatch.setattr(torch, "compile", failing_compile)
    forecaster = Forecaster.from_files(reference_dir / "params.npz", stats_dir,
                                       precision="fp32", device="cpu", cache_dir=tmp_path,
                                       compile=True)
    assert forecaster.network.compiled
    with caplog.at_level("WARNING", logger="graphcast_api.engine.network"):
        prediction = forecaster.forecast(inputs, 4, forcings)
    assert not forecaster.network.compiled
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1, warnings  # once, not once per step
    assert "torch.compile failed (no C++ compiler (stand-in)); running the network eagerly" \
        in warnings[0]
    _check_fp32(prediction, _load(reference_dir / "predictions_fp32.nc"), reference_dir,
                forecaster.task_config)


def test_chunked_decoding_and_row_blocks_match_official(reference_dir: Path, stats_dir: Path,
                                                        inputs, forcings,
                                                        tmp_path: Path) -> None:
    """The full-scale chunking, made small enough to split the reference's graphs.

    100 grid nodes per decoder chunk splits the 684-node grid in 7 (the last one shorter);
    as many per encoder chunk makes 7 encoder chunks (the last one moved back to overlap);
    1,000 rows per block splits each edge set (1,236 grid2mesh, 1,260 mesh, 2,052
    mesh2grid edges) when the static edge terms are computed.
    """
    chunked = Forecaster.from_files(reference_dir / "params.npz", stats_dir, precision="fp32",
                                    device="cpu", cache_dir=tmp_path, compile=False,
                                    decode_chunk_nodes=100, encode_chunk_nodes=100,
                                    row_block=1000)
    assert chunked.network.encoder_chunks.node_starts == [0, 100, 200, 300, 400, 500, 584]
    chunks = chunked.network._decode_chunks(684)
    assert len(chunks) == 7 and chunks[-1][0] == slice(588, 684)
    assert chunks[-1][1] == slice(3 * 588, 3 * 684)
    graphs = chunked.graphs
    assert min(len(edges.senders) for edges in
               (graphs.grid2mesh, graphs.mesh, graphs.mesh2grid)) > 1000
    prediction = chunked.forecast(inputs, 4, forcings)
    assert not chunked.network.compiled
    _check_fp32(prediction, _load(reference_dir / "predictions_fp32.nc"), reference_dir,
                chunked.task_config)


@pytest.mark.parametrize("compile", [False, True])
def test_recomputed_edge_terms_match_official(reference_dir: Path, stats_dir: Path, inputs,
                                              forcings, tmp_path: Path, compile: bool) -> None:
    """The low-memory operating point (static edge terms recomputed per chunk, chunked;
    compiled, the recomputation is a compiled stage too)."""
    recomputed = Forecaster.from_files(reference_dir / "params.npz", stats_dir,
                                       precision="fp32", device="cpu", cache_dir=tmp_path,
                                       compile=compile, decode_chunk_nodes=100,
                                       encode_chunk_nodes=100, edge_terms="recomputed")
    assert recomputed.network.edge_terms == "recomputed"
    assert (recomputed.network._stages["m2g_terms"]
            is not recomputed.network._eager_stages["m2g_terms"]) == compile
    _check_fp32(recomputed.forecast(inputs, 4, forcings),
                _load(reference_dir / "predictions_fp32.nc"), reference_dir,
                recomputed.task_config)
    assert recomputed.network.compiled == compile


def test_stored_edge_terms_keep_one_row_per_orbit(fp32: Forecaster, reference_dir: Path,
                                                  stats_dir: Path, inputs, forcings,
                                                  tmp_path: Path) -> None:
    """The stored operating point keeps a third of the grid2mesh and mesh2grid edges' terms,
    as the network keeps a third of its embedded mesh edges (the 10° grid has 36 columns:
    symmetry.py), and gives the outputs of every edge's own to 1e-4 of their RMS (the fp32
    tolerance against the official outputs is 1e-3)."""
    network, graphs = fp32.network, fp32.graphs
    assert network.edge_terms == "stored"
    assert network.g2m_static.stored_rows < 0.35 * len(graphs.grid2mesh.senders)
    assert network.m2g_static.stored_rows < 0.35 * len(graphs.mesh2grid.senders)
    assert network.mesh_edge0.stored_rows < 0.35 * len(graphs.mesh.senders)
    recomputed = Forecaster.from_files(reference_dir / "params.npz", stats_dir,
                                       precision="fp32", device="cpu", cache_dir=tmp_path,
                                       compile=False, edge_terms="recomputed")
    assert recomputed.network.g2m_static.stored_rows == 0
    features = fp32.first_step_features(inputs, forcings)
    shared, own = network(features), recomputed.network(features)
    # An edge and its images' features differ by float32 rounding (up to 2e-4 here)
    assert (shared - own).abs().max() < 1e-4 * own.square().mean().sqrt()


@pytest.mark.parametrize("compile", [False, True])
def test_chunked_encoder_equals_unchunked(reference_dir: Path, stats_dir: Path, inputs,
                                          forcings, tmp_path: Path, compile: bool) -> None:
    """Seven encoder chunks give the one-chunk network's outputs (eager and compiled)."""
    def network(chunk_nodes: int):
        return Forecaster.from_files(reference_dir / "params.npz", stats_dir, precision="fp32",
                                     device="cpu", cache_dir=tmp_path, compile=compile,
                                     encode_chunk_nodes=chunk_nodes)
    whole, chunked = network(10_000), network(100)
    assert len(whole.network.encoder_chunks.node_starts) == 1
    assert len(chunked.network.encoder_chunks.node_starts) == 7
    features = torch.from_numpy(whole.grid_features(whole._checked_inputs(inputs),
                                                    forcings.isel(time=[0])))
    expected, got = whole.network(features), chunked.network(features)
    assert chunked.network.compiled == compile
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [{"decode_chunk_nodes": 0}, {"encode_chunk_nodes": 0},
                                  {"row_block": 0}])
def test_chunk_sizes_must_be_positive(reference_dir: Path, stats_dir: Path, tmp_path: Path,
                                      size: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Forecaster.from_files(reference_dir / "params.npz", stats_dir, precision="fp32",
                              device="cpu", cache_dir=tmp_path, compile=False, **size)


@pytest.mark.parametrize("reuse", [True, False])
def test_network_steps_reuse_freed_memory(fp32: Forecaster, inputs, forcings, reuse: bool,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The rollout, its network steps and the work between them, runs under the heap rule
    (see engine/heap.py), released after; not at all with reuse_memory off."""
    network, held = fp32.network, []
    forward = network._forward

    def spy(*args):
        held.append(heap.active())
        return forward(*args)

    def unstack_spy(*args):
        held.append(heap.active())
        return unstack(*args)

    monkeypatch.setattr(network, "_forward", spy)
    monkeypatch.setattr(forecaster_module, "unstack", unstack_spy, raising=True)
    monkeypatch.setattr(network, "reuse_memory", reuse)
    fp32.forecast(inputs, 2, forcings.isel(time=[0, 1]))
    assert held == [reuse and heap._LIBC is not None] * 4
    assert not heap.active()


def test_rollout_yields_the_forecast_one_step_at_a_time(fp32: Forecaster, inputs,
                                                       forcings) -> None:
    """`rollout` yields exactly the frames `forecast` returns, in order; the caller's inputs
    are never written (the rollout overwrites only its own copy, from the second step)."""
    before = inputs.copy(deep=True)
    whole = fp32.forecast(inputs, 3, forcings)
    steps = list(fp32.rollout(inputs, 3, forcings))
    assert [dict(step.sizes) for step in steps] == [dict(whole.isel(time=[0]).sizes)] * 3
    for number, step in enumerate(steps):
        xr.testing.assert_equal(step, whole.isel(time=[number]))
    xr.testing.assert_identical(inputs, before)


def test_rollout_checks_its_inputs_before_the_first_step(fp32: Forecaster, inputs) -> None:
    with pytest.raises(ForecastInputError, match="lack variable"):
        fp32.rollout(inputs.drop_vars("temperature"), 2)  # raised before any iteration
    with pytest.raises(ForecastInputError, match="at least 1"):
        fp32.rollout(inputs, 0)


def test_next_inputs_in_place_writes_the_same_arrays(fp32: Forecaster, inputs,
                                                    forcings) -> None:
    """In place, the newest frame goes into the inputs' own arrays: the same values as a
    fresh copy, no second copy of the inputs."""
    own = fp32._checked_inputs(inputs).copy(deep=True)
    step = next(fp32.rollout(inputs, 1, forcings))
    fresh = fp32._next_inputs(own, step, forcings.isel(time=[0]), in_place=set())
    rolled = fp32._next_inputs(own, step, forcings.isel(time=[0]), in_place=set(own.data_vars))
    xr.testing.assert_identical(rolled, fresh)
    for name, value in own.data_vars.items():
        assert np.shares_memory(rolled[name].values, value.values), name


def test_rollout_rolls_handed_over_inputs_in_place(fp32: Forecaster, inputs,
                                                   forcings) -> None:
    """With overwrite_inputs the rollout yields the same frames and rolls the caller's own
    writable arrays from the first step (no copy of them is made); read-only arrays and
    arrays that overlap another variable's are copied, never written."""
    handed = inputs.copy(deep=True)
    handed["10m_u_component_of_wind"] = handed["2m_temperature"]  # one array for both
    expected = fp32.forecast(handed.copy(deep=True), 2, forcings)
    handed["temperature"].values.flags.writeable = False
    kept = {name: value.values.copy() for name, value in handed.data_vars.items()}
    steps = list(fp32.rollout(handed, 2, forcings, overwrite_inputs=True))
    for number, step in enumerate(steps):
        xr.testing.assert_equal(step, expected.isel(time=[number]))
    for name in ("temperature", "2m_temperature", "10m_u_component_of_wind"):
        np.testing.assert_array_equal(handed[name].values, kept[name], err_msg=name)
    # The rollout's last two frames lie in the handed-over arrays: rolled there from step 1.
    for name in ("geopotential", "mean_sea_level_pressure"):
        assert not np.array_equal(handed[name].values, kept[name]), name
        np.testing.assert_array_equal(handed[name].values, expected[name].values, name)


def test_rollout_with_forcings_computed(fp32: Forecaster, inputs, reference_dir: Path) -> None:
    """No TISR in the inputs and no target forcings: computed, same result."""
    bare = inputs.drop_vars(["toa_incident_solar_radiation", "year_progress_sin",
                             "day_progress_cos"])
    prediction = fp32.forecast(bare, 4)
    _check_fp32(prediction, _load(reference_dir / "predictions_fp32.nc"), reference_dir,
                fp32.task_config)


@pytest.mark.parametrize("products, compile", [
    ("onednn", False), ("amx", False), pytest.param("amx", True, marks=pytest.mark.slow)])
def test_bf16_rollout_within_statistical_tolerance(reference_dir: Path, stats_dir: Path,
                                                   inputs, forcings, fp32: Forecaster,
                                                   products: str, compile: bool) -> None:
    """Each bf16 back end against the official fp32 rollout. The amx one (the edge MLPs in
    one AMX kernel, picked by default in bf16 on AMX CPUs) runs where the CPU has AMX, the
    compiled run with the encoder and the decoder in two chunks each (the encoder's chunks
    sorted by receiver, adding to one buffer); elsewhere asking for it must be refused,
    which is what is checked there."""
    if products == "amx" and not amx.cpu_has_amx():
        assert default_products(torch.device("cpu"), torch.bfloat16) == "onednn"
        with pytest.raises(DeviceUnavailable, match="AMX"):
            Forecaster.from_files(reference_dir / "params.npz", stats_dir, precision="bf16",
                                  device="cpu", products="amx")
        return
    chunk = 342 if compile else 16_384
    bf16 = Forecaster.from_files(reference_dir / "params.npz", stats_dir, precision="bf16",
                                 device="cpu", compile=compile, products=products,
                                 decode_chunk_nodes=chunk, encode_chunk_nodes=chunk)
    assert (bf16.precision, bf16.products) == ("bf16", products)
    assert len(bf16.network.encoder_chunks.node_starts) == (2 if compile else 1)
    prediction = bf16.forecast(inputs, 4, forcings)
    reference = _load(reference_dir / "predictions_fp32.nc")
    for name in reference.data_vars:
        ours = prediction[name]
        scaled = (ours.values - reference[name].transpose(*ours.dims).values) / \
            _scale(reference_dir, fp32.task_config, name, ours.dims)
        assert np.abs(scaled).max() <= 0.5, name
        assert np.sqrt(np.mean(scaled ** 2)) <= 0.05, name


def test_first_step_features_are_what_the_rollout_feeds(reference_dir: Path, stats_dir: Path,
                                                        inputs, forcings) -> None:
    """A profile or check of one step gets the rollout's input: cast to the network's dtype,
    so it runs the rollout's kernels, not ones compiled for float32 features."""
    bf16 = Forecaster.from_files(reference_dir / "params.npz", stats_dir, precision="bf16",
                                 device="cpu", compile=False)
    features = bf16.first_step_features(inputs, forcings)
    assert features.dtype == torch.bfloat16
    with np.load(reference_dir / "debug_step1_grid_node_features.npz") as data:
        expected = torch.from_numpy(data["grid_node_features"]).to(torch.bfloat16)
    torch.testing.assert_close(features, expected, rtol=0, atol=0)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.drop_vars("temperature"), "lack variable.*temperature"),
    (lambda d: d.isel(lat=slice(1, None)), "lat grid does not match"),
    (lambda d: d.isel(level=slice(1, None)), r"lack pressure level\(s\) \[50\]"),
    (lambda d: d.isel(time=[1]), "need 2 time frames"),
    (lambda d: d.drop_vars("datetime"), "datetime"),
    (lambda d: d.assign_coords(datetime=d["datetime"] - [[np.timedelta64(6, "h"), 0]]),
     "input frames must be 6 h apart; their datetimes are 2021-12-31T18:00, 2022-01-01T06:00"),
    (lambda d: d.assign_coords(datetime=d["datetime"].isel(batch=0)), r"\(batch, time\)"),
    (lambda d: d.expand_dims("member"), r"unknown dimension\(s\) \['member'\]"),
    (lambda d: d.assign(temperature=d["temperature"].where(d["level"] != 500)),
     "input variable 'temperature' holds NaN or infinite values"),
    (lambda d: d.assign(land_sea_mask=d["land_sea_mask"] * np.inf),
     "input variable 'land_sea_mask' holds NaN"),
])
def test_bad_inputs_are_rejected(fp32: Forecaster, inputs, change, message: str) -> None:
    with pytest.raises(ForecastInputError, match=message):
        fp32.forecast(change(inputs), 1)


@pytest.mark.parametrize("change, message", [
    (lambda f: f.assign_coords(time=f["time"] * 2), "forcings' time 12 h, 24 h, 36 h are not "
                                                    "the target times 6 h, 12 h, 18 h"),
    (lambda f: f.assign_coords(datetime=(("batch", "time"), np.array(
        [["2022-01-01T12", "2022-01-01T18", "2022-01-02T06", "2022-01-02T12"]],
        "datetime64[ns]"))), "forcings' datetime 2022-01-01T12:00, 2022-01-01T18:00, "
                             "2022-01-02T06:00"),
    (lambda f: f.assign(year_progress_sin=f["year_progress_sin"] * np.nan),
     "forcing variable 'year_progress_sin' holds NaN"),
])
def test_bad_forcings_are_rejected(fp32: Forecaster, inputs, forcings, change,
                                   message: str) -> None:
    """Given forcings are taken by position: their times must be the target times."""
    with pytest.raises(ForecastInputError, match=message):
        fp32.forecast(inputs, 3, change(forcings))


def test_inputs_in_any_dimension_order_give_the_same_forecast(fp32: Forecaster, inputs,
                                                              forcings) -> None:
    """Each variable is transposed to the engine's order before its channels are stacked."""
    permuted = inputs.transpose("lon", "level", "time", "lat", "batch")
    permuted = permuted.assign(day_progress_sin=inputs["day_progress_sin"].transpose(
        "lon", "time", "batch"))
    assert permuted["temperature"].dims == ("lon", "level", "time", "lat", "batch")
    expected = fp32.forecast(inputs, 2, forcings)
    xr.testing.assert_identical(fp32.forecast(permuted, 2, forcings), expected)
    handed = permuted.copy(deep=True)
    steps = list(fp32.rollout(handed, 2, forcings, overwrite_inputs=True))
    for number, step in enumerate(steps):
        xr.testing.assert_equal(step, expected.isel(time=[number]))


def test_forecaster_attributes(fp32: Forecaster) -> None:
    assert fp32.name == "params"
    assert fp32.latitudes[0] == -90 and fp32.latitudes[-1] == 90
    assert fp32.longitudes[-1] == 350
    assert fp32.task_config.input_duration == "12h"
    assert fp32.model_config.mesh_size == 2
