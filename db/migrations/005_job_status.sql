-- Each job's current status, so `GET /jobs?status=` reads an index instead of every
-- job's history. The log stays append-only; writers keep this table in step in the same
-- transaction as each log INSERT (shared/src/log-repository.ts).
--
-- The status is the one the job's view shows: its terminal row's once it has one, else
-- its latest row's. `status_seq` is that row's id, plus 2^52 when it is terminal, so a
-- terminal row outranks every other; writers keep the highest, whatever order they
-- commit in. `queued_id` is the id of the job's `queued` row: the listing's order and
-- cursor, as in the log. `actor` is that row's too.

CREATE TABLE IF NOT EXISTS job_status (
  job_id VARCHAR(64) NOT NULL PRIMARY KEY,
  status VARCHAR(100) NOT NULL,
  status_seq BIGINT NOT NULL,
  queued_id BIGINT NULL,
  actor VARCHAR(64) NULL,
  KEY job_status_status (status, queued_id),
  KEY job_status_actor (actor, status, queued_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Backfill from the log. Running it again brings every job up to date (highest seq wins).
INSERT INTO job_status (job_id, status, status_seq, queued_id, actor)
SELECT s.job_id, l.status, COALESCE(s.terminal_id + 4503599627370496, s.last_id), s.queued_id, q.actor
FROM (
  SELECT job_id,
         MAX(id) AS last_id,
         MAX(CASE WHEN status IN ('completed', 'failed', 'cancelled') THEN id END) AS terminal_id,
         MIN(CASE WHEN status = 'queued' THEN id END) AS queued_id
  FROM log
  WHERE job_id IS NOT NULL
  GROUP BY job_id
) s
JOIN log l ON l.id = COALESCE(s.terminal_id, s.last_id)
LEFT JOIN log q ON q.id = s.queued_id
ON DUPLICATE KEY UPDATE
  status = IF(VALUES(status_seq) > job_status.status_seq, VALUES(status), job_status.status),
  status_seq = GREATEST(job_status.status_seq, VALUES(status_seq)),
  actor = IF(VALUES(queued_id) IS NULL, job_status.actor, VALUES(actor)),
  queued_id = COALESCE(VALUES(queued_id), job_status.queued_id);

INSERT INTO schema_migrations (version) VALUES ('005_job_status') ON DUPLICATE KEY UPDATE version = version;
