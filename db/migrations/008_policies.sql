-- Policies: retention per destination, schedules, and what the log records of them.
--
-- retention_policy: a destination's `forget` rules as JSON text (the API's RetentionPolicy),
-- set by an admin. Kept apart from `destination` (whose row names the owner, the first token to
-- write it), so a policy can be set before anyone has written the destination.
CREATE TABLE IF NOT EXISTS retention_policy (
  destination VARCHAR(1024) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  policy TEXT NOT NULL,
  updated_by VARCHAR(64) NULL,
  updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- schedule: the truth about schedules; Redis holds only the BullMQ job schedulers made from
-- these rows, re-installed at start-up. `backup` is the backup request as JSON text; `actor` is
-- the token that created the schedule, whose rights each run carries. `last_job_id` is the
-- newest run, so a run is not queued while the previous one is unfinished.
CREATE TABLE IF NOT EXISTS schedule (
  name VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  cron VARCHAR(255) NOT NULL,
  timezone VARCHAR(64) NOT NULL,
  backup TEXT NOT NULL,
  actor VARCHAR(64) NOT NULL,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  last_job_id VARCHAR(64) NULL,
  KEY schedule_actor (actor, name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- log.schedule: the schedule a backup ran for (NULL for jobs submitted by hand).
-- log.removed_snapshot_id: on a prune's `removed` rows (one per snapshot it removed, with a
-- NULL attempt, so log_transition does not tell them apart), the snapshot; unique, so a row
-- delivered again is written once, as log_one_terminal does for terminal rows.
SET @coffer_stmt = (
  SELECT IF(
    COUNT(*) = 0,
    CONCAT(
      'ALTER TABLE log ADD COLUMN schedule VARCHAR(128) NULL,',
      ' ADD COLUMN removed_snapshot_id VARCHAR(64)',
      ' GENERATED ALWAYS AS (CASE WHEN status = ''removed'' THEN snapshot_id END) STORED,',
      ' ADD UNIQUE KEY log_one_removal (removed_snapshot_id)'
    ),
    'DO 0'
  )
  FROM information_schema.columns
  WHERE table_schema = DATABASE() AND table_name = 'log' AND column_name = 'schedule'
);
PREPARE coffer_stmt FROM @coffer_stmt;
EXECUTE coffer_stmt;
DEALLOCATE PREPARE coffer_stmt;

INSERT INTO schema_migrations (version) VALUES ('008_policies') ON DUPLICATE KEY UPDATE version = version;
