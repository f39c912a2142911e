-- Webhooks: where job transitions are POSTed, and every attempt at doing so.
--
-- webhook: one subscription, created by an admin. `events` is the job statuses it wants, as
-- comma-separated text (`completed,failed`). `secret` signs each delivery (HMAC-SHA256), so it
-- is kept as given: the API shows it once, in the answer to its creation, and never again.
-- A deleted webhook is deleted with its deliveries (and its secret): nothing can read them once
-- the webhook is gone, and a secret should not outlive its subscription.
CREATE TABLE IF NOT EXISTS webhook (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  url VARCHAR(2048) NOT NULL,
  events VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  secret VARCHAR(256) NOT NULL,
  created_by VARCHAR(64) NOT NULL,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- webhook_delivery: one row per attempt at delivering one log row (a job's transition) to one
-- webhook. `delivery_id` (`<webhook id>-<log row id>`) is the same for every attempt at one
-- delivery, as the Coffer-Delivery header sends it. `outcome`: delivered (a 2xx answer),
-- retrying (failed; another attempt follows) or failed (the last attempt failed).
-- Listed newest first per webhook: (webhook_id, id).
CREATE TABLE IF NOT EXISTS webhook_delivery (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  webhook_id BIGINT NOT NULL,
  delivery_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  job_id VARCHAR(64) NOT NULL,
  event VARCHAR(32) NOT NULL,
  log_row_id BIGINT NOT NULL,
  attempt INT NOT NULL,
  started_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  duration_ms INT NOT NULL,
  http_status SMALLINT NULL,
  error VARCHAR(1024) NULL,
  outcome VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  -- An attempt recorded again (a delivery job taken over after a stall) replaces its row.
  UNIQUE KEY webhook_delivery_attempt (delivery_id, attempt),
  KEY webhook_delivery_newest (webhook_id, id),
  CONSTRAINT webhook_delivery_webhook FOREIGN KEY (webhook_id) REFERENCES webhook (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

INSERT INTO schema_migrations (version) VALUES ('009_webhooks') ON DUPLICATE KEY UPDATE version = version;
