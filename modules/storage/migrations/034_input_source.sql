-- The input store holds analyses from more than one source: ERA5 and the ECMWF open data
-- (IFS HRES step 0). The tables lose their ERA5 prefix and each field carries its source,
-- so the same valid time can be stored from both side by side. Existing rows are ERA5.
ALTER TABLE era5_grids RENAME TO input_grids;
ALTER TABLE era5_fields RENAME TO input_fields;
ALTER TABLE era5_static_fields RENAME TO input_static_fields;
ALTER SEQUENCE era5_grids_grid_id_seq RENAME TO input_grids_grid_id_seq;

ALTER TABLE input_fields
    ADD COLUMN source text NOT NULL DEFAULT 'era5' CHECK (source IN ('era5', 'ifs-opendata')),
    DROP CONSTRAINT era5_fields_pkey,
    ADD CONSTRAINT input_fields_pkey PRIMARY KEY (source, grid_id, valid_time, variable, level);

ALTER TABLE input_static_fields
    ADD COLUMN source text NOT NULL DEFAULT 'era5' CHECK (source IN ('era5', 'ifs-opendata')),
    DROP CONSTRAINT era5_static_fields_pkey,
    ADD CONSTRAINT input_static_fields_pkey PRIMARY KEY (source, grid_id, variable);

-- Verification pairs a prediction with the truth of its own source: the view carries it.
CREATE OR REPLACE VIEW forecast_errors AS
SELECT p.prediction_id, p.model, p.init_time, p.forecast_time, p.lead_hours, p.site,
       p.variable, p.level, p.unit, p.value AS forecast, v.truth, v.persistence,
       p.value - v.truth AS error, v.persistence - v.truth AS persistence_error, p.source
FROM predictions p JOIN verification_pairs v USING (prediction_id);
