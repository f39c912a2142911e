-- The token that submitted a job (or tried to: `rejected` rows), on every log row.
-- MySQL has no ADD COLUMN IF NOT EXISTS, so the column is added only when missing: the
-- file stays safe to run again (DDL commits as it goes, so a run can stop half-way).

SET @coffer_stmt = (
  SELECT IF(
    COUNT(*) = 0,
    'ALTER TABLE log ADD COLUMN actor VARCHAR(64) NULL, ADD KEY log_actor (actor, id)',
    'DO 0'
  )
  FROM information_schema.columns
  WHERE table_schema = DATABASE() AND table_name = 'log' AND column_name = 'actor'
);
PREPARE coffer_stmt FROM @coffer_stmt;
EXECUTE coffer_stmt;
DEALLOCATE PREPARE coffer_stmt;

INSERT INTO schema_migrations (version) VALUES ('003_log_actor') ON DUPLICATE KEY UPDATE version = version;
