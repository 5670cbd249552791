"""Reforecasts of many cycles spread over a Ray cluster (`trigger_and_ingest_forecast.py
--backfill`).

Outside `modules/` because its workers run the engine in-process (torch): the scheduled job
imports none of this. Each worker is a Ray actor that loads the model once and runs whole
cycles with the job's own `run_locked_cycle`, its infer stage served by `InProcessClient`.
"""
