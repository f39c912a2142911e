-- store: which backup store (the folder every worker mounts at BACKUP_ROOT) this database's
-- snapshots live in. One row, written by the first worker to start; the same id is kept in
-- `<BACKUP_ROOT>/.coffer-store`, and a worker whose folder holds another id (or none, once the
-- row exists) refuses to start: workers on several hosts must share one store.
CREATE TABLE IF NOT EXISTS store (
  singleton TINYINT UNSIGNED NOT NULL PRIMARY KEY DEFAULT 1,
  store_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  created_by VARCHAR(255) NOT NULL,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  CONSTRAINT store_single_row CHECK (singleton = 1)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

INSERT INTO schema_migrations (version) VALUES ('010_store') ON DUPLICATE KEY UPDATE version = version;
