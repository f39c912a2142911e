-- Who owns each destination: the first token to write a backup into it. Later snapshots of a
-- destination hard-link files from its newest one, so a destination shared between tokens would
-- let one token's backups decide what another token's backups contain. Operators write only into
-- destinations they own; admins anywhere. Ownership is never released, so `owner` names one
-- token for good (token names are never reused).
-- `name` is the destination as requested (ASCII `[A-Za-z0-9._-/]`, at most 1024 characters),
-- compared byte for byte as the file system compares folder names.

CREATE TABLE IF NOT EXISTS destination (
  name VARCHAR(1024) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  owner VARCHAR(64) NOT NULL,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

INSERT INTO schema_migrations (version) VALUES ('006_destination') ON DUPLICATE KEY UPDATE version = version;
