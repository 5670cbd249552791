-- Forecasts from more than one source of initial conditions ('era5': the J-6 ERA5 job;
-- 'ifs-opendata': ECMWF's live open data). Runs, predictions and scores carry their source,
-- and the unique keys include it, so both forecasts of one cycle live side by side.
ALTER TABLE forecast_runs ADD COLUMN source text NOT NULL DEFAULT 'era5';
ALTER TABLE predictions ADD COLUMN source text NOT NULL DEFAULT 'era5';
ALTER TABLE forecast_scores ADD COLUMN source text NOT NULL DEFAULT 'era5';

ALTER TABLE predictions
    DROP CONSTRAINT predictions_model_init_time_lead_hours_site_variable_level_key,
    ADD CONSTRAINT predictions_cycle_value_key
        UNIQUE (source, model, init_time, lead_hours, site, variable, level);
ALTER TABLE forecast_scores
    DROP CONSTRAINT forecast_scores_model_variable_level_lead_hours_site_key,
    ADD CONSTRAINT forecast_scores_key
        UNIQUE NULLS NOT DISTINCT (source, model, variable, level, lead_hours, site);

DROP INDEX forecast_runs_init_time;
CREATE INDEX forecast_runs_cycle ON forecast_runs (init_time, source, model, status);

-- Which database session ran an attempt (pg_stat_activity's pid and backend_start): a
-- 'running' attempt whose session is gone was killed, and only such attempts are marked
-- interrupted, so that runs of other cycles going on at the same time are left alone.
ALTER TABLE forecast_runs
    ADD COLUMN backend_pid     integer,
    ADD COLUMN backend_started timestamptz;
