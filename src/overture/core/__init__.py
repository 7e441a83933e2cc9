"""Pure logic, no I/O: filters, DAG checks, schedules, bucketing, statistics, ranking."""
