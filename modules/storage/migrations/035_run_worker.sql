-- Which worker ran an attempt (host and process, e.g. a Ray actor on a cluster node) and
-- which attempt of its cycle it was (1 for the first; a backfill's retry after a killed
-- worker is 2), so that a reforecast spread over machines can be traced cycle by cycle.
ALTER TABLE forecast_runs
    ADD COLUMN worker  text,
    ADD COLUMN attempt integer;
