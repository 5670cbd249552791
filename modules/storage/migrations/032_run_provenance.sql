-- Where each run's forecast came from, as the service's /v1/model described it: checkpoint
-- file name and SHA-256, arithmetic precision, device, and the project version of the
-- service. NULL for attempts that ended before the API answered (and for older runs).
ALTER TABLE forecast_runs
    ADD COLUMN checkpoint_file   text,
    ADD COLUMN checkpoint_sha256 text,
    ADD COLUMN precision         text,
    ADD COLUMN device            text,
    ADD COLUMN project_version   text;
