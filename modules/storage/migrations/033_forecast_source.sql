-- STAND-IN for the lead's migration 033 (branch ifs-opendata needs the column to test
-- verification by source): the lead's own 033 replaces this file at merge.
ALTER TABLE forecast_runs ADD COLUMN source text NOT NULL DEFAULT 'era5';
ALTER TABLE predictions ADD COLUMN source text NOT NULL DEFAULT 'era5';
ALTER TABLE predictions DROP CONSTRAINT predictions_model_init_time_lead_hours_site_variable_level_key;
ALTER TABLE predictions ADD CONSTRAINT predictions_source_unique
    UNIQUE (source, model, init_time, lead_hours, site, variable, level);
ALTER TABLE forecast_scores ADD COLUMN source text NOT NULL DEFAULT 'era5';
ALTER TABLE forecast_scores DROP CONSTRAINT forecast_scores_model_variable_level_lead_hours_site_key;
ALTER TABLE forecast_scores ADD CONSTRAINT forecast_scores_source_unique
    UNIQUE NULLS NOT DISTINCT (source, model, variable, level, lead_hours, site);
