-- At most one terminal row (completed, failed, cancelled) per job, whatever
-- retries, crashes or duplicate deliveries happen: a second one hits this key
-- and the writers' ON DUPLICATE KEY UPDATE turns it into a no-op.
ALTER TABLE log
  ADD COLUMN terminal_job_id VARCHAR(64)
    GENERATED ALWAYS AS (CASE WHEN status IN ('completed', 'failed', 'cancelled') THEN job_id END) STORED,
  ADD UNIQUE KEY log_one_terminal (terminal_job_id);

INSERT INTO schema_migrations (version) VALUES ('004_log_one_terminal') ON DUPLICATE KEY UPDATE version = version;
