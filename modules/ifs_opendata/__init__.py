"""ECMWF open data (IFS HRES, 0.25 deg, CC-BY-4.0) as a source of the input store."""
