-- How many values of a run were small negatives of a non-negative quantity
-- (total_precipitation_6hr, specific_humidity) stored as 0; see the README's
-- "Running the batch job".
ALTER TABLE forecast_runs ADD COLUMN clamped_values integer NOT NULL DEFAULT 0;
