-- Initial schema: the ERA5 store, the forecast run ledger and the predictions.

-- A regular global latitude/longitude grid, described once.
-- Latitudes ascend from lat_first (-90) in lat_step; longitudes from lon_first (0) in lon_step.
CREATE TABLE era5_grids (
    grid_id    serial PRIMARY KEY,
    n_lat      integer NOT NULL CHECK (n_lat > 1),
    n_lon      integer NOT NULL CHECK (n_lon > 1),
    lat_first  double precision NOT NULL,
    lat_step   double precision NOT NULL CHECK (lat_step > 0),
    lon_first  double precision NOT NULL,
    lon_step   double precision NOT NULL CHECK (lon_step > 0),
    UNIQUE (n_lat, n_lon, lat_first, lat_step, lon_first, lon_step)
);

-- One row per (grid, valid time, variable, level): a whole lat x lon field as packed
-- little-endian float32, row-major (latitude outer). level = 0 for single-level fields,
-- otherwise the pressure level in hPa.
CREATE TABLE era5_fields (
    grid_id    integer NOT NULL REFERENCES era5_grids,
    valid_time timestamptz NOT NULL,
    variable   text NOT NULL,
    level      integer NOT NULL CHECK (level >= 0),
    data       bytea NOT NULL,
    loaded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (grid_id, valid_time, variable, level)
);
-- Packed floats do not compress: store out of line without trying (no TOAST compression).
ALTER TABLE era5_fields ALTER COLUMN data SET STORAGE EXTERNAL;

-- Time-invariant fields (geopotential_at_surface, land_sea_mask), stored once per grid.
CREATE TABLE era5_static_fields (
    grid_id    integer NOT NULL REFERENCES era5_grids,
    variable   text NOT NULL,
    data       bytea NOT NULL,
    loaded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (grid_id, variable)
);
ALTER TABLE era5_static_fields ALTER COLUMN data SET STORAGE EXTERNAL;

-- One row per attempt of the batch job for one cycle.
CREATE TABLE forecast_runs (
    run_id       bigserial PRIMARY KEY,
    init_time    timestamptz NOT NULL,
    model        text NOT NULL,
    status       text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'skipped')),
    reason       text,
    exit_code    integer,
    rows_written integer NOT NULL DEFAULT 0,
    prepare_s    double precision,
    infer_s      double precision,
    ingest_s     double precision,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
CREATE INDEX forecast_runs_init_time ON forecast_runs (init_time, model, status);

-- One row per forecast value. forecast_time is the valid time (init_time + lead_hours).
-- level = 0 for single-level variables.
CREATE TABLE predictions (
    prediction_id bigserial PRIMARY KEY,
    run_id        bigint NOT NULL REFERENCES forecast_runs,
    model         text NOT NULL,
    init_time     timestamptz NOT NULL,
    forecast_time timestamptz NOT NULL,
    lead_hours    integer NOT NULL CHECK (lead_hours > 0),
    site          text NOT NULL,
    latitude      double precision NOT NULL,
    longitude     double precision NOT NULL,
    variable      text NOT NULL,
    level         integer NOT NULL DEFAULT 0,
    value         double precision NOT NULL,
    unit          text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (forecast_time = init_time + lead_hours * interval '1 hour'),
    UNIQUE (model, init_time, lead_hours, site, variable, level)
);
CREATE INDEX predictions_forecast_time ON predictions (forecast_time);
