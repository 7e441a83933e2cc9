"""Runtime: scheduler, durable job queue and workers, transactional outbox and its dispatcher."""
