"""What the batch job and the GraphCast service share, in numpy only (no torch, no psycopg2).

`variables`: the GraphCast variable catalogue; `cycles`: the 6-hourly clock; `model_spec`:
what a served model takes and gives; `request`/`reply`/`wire`: the HTTP contract of
docs/api.md; `interpolation`: site values from grids; `errors`: the exit-code table;
`project`: where the working copy is; `files`: NetCDF signatures, SHA-256, atomic writes;
`local_service`: a service run on loopback (the demo's, the benchmarks', the tests');
`urls`: where downloads may come from, and what is this machine only (`is_loopback_host`).
"""
