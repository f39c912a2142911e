-- Coffer's log: one row per status transition of a backup job, appended, never updated.
-- Compatible with the seed's log(id, date, action, parameter, status).
-- Each migration records itself, so the db image's init (which runs these files
-- directly) and the services' runner agree on what has been applied.

CREATE TABLE IF NOT EXISTS schema_migrations (
  version VARCHAR(255) NOT NULL PRIMARY KEY,
  applied_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS log (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  date TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  action VARCHAR(100) NOT NULL,
  parameter VARCHAR(4096) NOT NULL,
  status VARCHAR(100) NOT NULL,
  job_id VARCHAR(64) NULL,
  attempt INT NULL,
  worker VARCHAR(255) NULL,
  message TEXT NULL,
  files BIGINT NULL,
  bytes BIGINT NULL,
  duration_ms BIGINT NULL,
  code VARCHAR(64) NULL,
  destination VARCHAR(1024) NULL,
  snapshot TEXT NULL,
  -- A retried write of the same transition changes nothing.
  UNIQUE KEY log_transition (job_id, attempt, status),
  KEY log_job (job_id, id),
  KEY log_date (date),
  KEY log_status (status, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

INSERT INTO schema_migrations (version) VALUES ('001_log') ON DUPLICATE KEY UPDATE version = version;
