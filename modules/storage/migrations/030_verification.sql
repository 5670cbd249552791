-- Forecast verification: the ERA5 truth paired with each prediction, and aggregate scores.

-- One row per verified prediction: the ERA5 value at the site at the valid time (truth) and
-- at the initial time (the persistence forecast), bilinearly interpolated on grid_id.
-- The forecast value stays in predictions; errors are derived in the view below.
CREATE TABLE verification_pairs (
    prediction_id bigint PRIMARY KEY REFERENCES predictions ON DELETE CASCADE,
    grid_id       integer NOT NULL REFERENCES era5_grids,
    truth         double precision NOT NULL,
    persistence   double precision NOT NULL,
    verified_at   timestamptz NOT NULL DEFAULT now()
);

-- Each verified prediction with its error (forecast - truth) and the persistence error
-- (truth at init_time - truth at forecast_time).
CREATE VIEW forecast_errors AS
SELECT p.prediction_id, p.model, p.init_time, p.forecast_time, p.lead_hours, p.site,
       p.variable, p.level, p.unit, p.value AS forecast, v.truth, v.persistence,
       p.value - v.truth AS error, v.persistence - v.truth AS persistence_error
FROM predictions p JOIN verification_pairs v USING (prediction_id);

-- Scores over every verified pair, per model x variable x level x lead time x site.
-- site IS NULL: all sites pooled; lead_hours IS NULL: all lead times pooled.
-- skill = 1 - rmse / persistence_rmse (NULL when persistence_rmse is 0).
CREATE TABLE forecast_scores (
    model             text NOT NULL,
    variable          text NOT NULL,
    level             integer NOT NULL,
    lead_hours        integer,
    site              text,
    unit              text NOT NULL,
    n                 integer NOT NULL CHECK (n > 0),
    bias              double precision NOT NULL,
    mae               double precision NOT NULL,
    rmse              double precision NOT NULL,
    persistence_bias  double precision NOT NULL,
    persistence_mae   double precision NOT NULL,
    persistence_rmse  double precision NOT NULL,
    skill             double precision,
    first_valid_time  timestamptz NOT NULL,
    last_valid_time   timestamptz NOT NULL,
    computed_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (model, variable, level, lead_hours, site)
);
