"""Model inputs: the analysis store in PostgreSQL and what fills it (ERA5 files from the CDS,
NetCDF and GRIB sources, conservative regridding, cycle status)."""
