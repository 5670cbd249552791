"""What the batch job needs around its three stages: the run ledger, logging, the sites
file and the cron / Task Scheduler entry."""
