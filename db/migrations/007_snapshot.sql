-- The snapshot catalog: one row per completed backup, identified by the id of the job that
-- made it. Writers insert and update it in the same transaction as the log row that reports
-- the change (shared/src/log-repository.ts), so the catalog is exactly as durable as the log.
-- `seq` is the listing's order and cursor (newest first); `actor` is the token that submitted
-- the backup, so operators see only their own snapshots, as with jobs.
-- `destination` is ASCII, as the destination table holds it (shared/src/path-policy.ts).

CREATE TABLE IF NOT EXISTS snapshot (
  seq BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  id VARCHAR(64) NOT NULL,
  destination VARCHAR(1024) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  source VARCHAR(4096) NOT NULL,
  path TEXT NOT NULL,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  files BIGINT NOT NULL,
  bytes BIGINT NOT NULL,
  files_linked BIGINT NOT NULL,
  bytes_linked BIGINT NOT NULL,
  manifest_sha256 CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  actor VARCHAR(64) NULL,
  verified_at TIMESTAMP(3) NULL,
  verify VARCHAR(16) NULL,
  deleted_at TIMESTAMP(3) NULL,
  UNIQUE KEY snapshot_id (id),
  -- A key holds at most 3072 bytes: the whole ASCII destination (1024) and seq fit.
  KEY snapshot_destination (destination, seq),
  KEY snapshot_actor (actor, seq),
  CONSTRAINT snapshot_verify CHECK (verify IN ('ok', 'damaged'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The snapshot a restore or verify job reads, on each of its log rows (NULL for other kinds),
-- so a snapshot still to be read by an unfinished job can be found and kept.
SET @coffer_stmt = (
  SELECT IF(
    COUNT(*) = 0,
    'ALTER TABLE log ADD COLUMN snapshot_id VARCHAR(64) NULL, ADD KEY log_snapshot_id (snapshot_id, job_id)',
    'DO 0'
  )
  FROM information_schema.columns
  WHERE table_schema = DATABASE() AND table_name = 'log' AND column_name = 'snapshot_id'
);
PREPARE coffer_stmt FROM @coffer_stmt;
EXECUTE coffer_stmt;
DEALLOCATE PREPARE coffer_stmt;

-- Each job's kind (the `action` of its `queued` row), so `GET /jobs?kind=&status=` reads an
-- index: job_status_kind for everyone's jobs, job_status_actor_kind for one token's.
SET @coffer_stmt = (
  SELECT IF(
    COUNT(*) = 0,
    CONCAT(
      'ALTER TABLE job_status ADD COLUMN kind VARCHAR(16) NOT NULL DEFAULT ''backup'',',
      ' ADD KEY job_status_kind (kind, status, queued_id),',
      ' ADD KEY job_status_actor_kind (actor, kind, status, queued_id)'
    ),
    'DO 0'
  )
  FROM information_schema.columns
  WHERE table_schema = DATABASE() AND table_name = 'job_status' AND column_name = 'kind'
);
PREPARE coffer_stmt FROM @coffer_stmt;
EXECUTE coffer_stmt;
DEALLOCATE PREPARE coffer_stmt;

-- Backfill from the log; running it again changes nothing. Actions are job kinds (at most 16).
-- A job whose queued row is missing takes its status row's action (status_seq is that row's
-- id, plus 2^52 when terminal): every row of a job has the same.
UPDATE job_status
JOIN log ON log.id = COALESCE(job_status.queued_id, job_status.status_seq MOD 4503599627370496)
SET job_status.kind = LEFT(log.action, 16)
WHERE job_status.kind <> LEFT(log.action, 16);

INSERT INTO schema_migrations (version) VALUES ('007_snapshot') ON DUPLICATE KEY UPDATE version = version;
