-- An attempt is live while its database session holds its cycle's lock (pg_locks, which
-- shows every role's locks; see modules/job/ledger.py mark_interrupted). The session's start
-- time, kept since 033 to tell sessions apart, was never read: backend_pid with the lock is
-- what decides.
ALTER TABLE forecast_runs DROP COLUMN backend_started;
