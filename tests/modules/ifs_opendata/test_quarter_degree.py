"""A few true 0.25 deg open-data fields (1440 x 721, as published) through download and load."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from graphcast_contract.model_spec import global_grid
from graphcast_contract.sources import InputSource
from graphcast_contract.variables import STANDARD_GRAVITY
from modules.ifs_opendata.download import RunDownloader
from modules.inputs import store
from modules.inputs.loader import load_into
from tests.modules.ifs_opendata.opendata_server import OpenDataServer, build_run, synthetic_field

RUN = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)
SHAPE = (721, 1440)


def test_quarter_degree_fields_are_stored_at_quarter_degree_and_regridded(conn, tmp_path: Path
                                                                         ) -> None:
    run = build_run(RUN, SHAPE, only=(("2t", 0), ("gh", 500)))
    with OpenDataServer({RUN: run}) as server:
        paths = RunDownloader(server.url, tmp_path).fetch(RUN, ["2t", "gh@500"])
    assert [p.stat().st_size for p in paths] == [run.entries["2t"][1],
                                                  run.entries["gh@500"][1]]
    with conn, conn.cursor() as cur:
        for path in paths:
            load_into(cur, path, 0.25, 0.1, InputSource.IFS_OPENDATA)
            load_into(cur, path, 1.0, 0.1, InputSource.IFS_OPENDATA)
        quarter = store.read_fields(cur, global_grid(0.25), RUN,
                                    [("2m_temperature", 0), ("geopotential", 500)],
                                    InputSource.IFS_OPENDATA)
        one = store.read_fields(cur, global_grid(1.0), RUN, [("geopotential", 500)],
                                InputSource.IFS_OPENDATA)
    assert quarter[("2m_temperature", 0)].shape == SHAPE
    np.testing.assert_allclose(quarter[("2m_temperature", 0)],
                               synthetic_field("2t", 0, RUN, SHAPE)[::-1], atol=1e-3)
    z500 = synthetic_field("gh", 500, RUN, SHAPE)[::-1] * STANDARD_GRAVITY
    np.testing.assert_allclose(quarter[("geopotential", 500)], z500, rtol=1e-6)
    coarse = one[("geopotential", 500)]
    assert coarse.shape == (181, 360)
    # conservative: the area-weighted global mean is kept
    weights = np.cos(np.radians(global_grid(1.0).latitudes()))[:, None]
    fine_weights = np.cos(np.radians(global_grid(0.25).latitudes()))[:, None]
    assert abs((coarse * weights).sum() / (weights.sum() * 360)
               - (z500 * fine_weights).sum() / (fine_weights.sum() * 1440)) < 1.0
