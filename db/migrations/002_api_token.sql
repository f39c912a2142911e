-- API bearer tokens. Only a SHA-256 of each token is stored: tokens are 256-bit random
-- values, so an unkeyed hash is enough to make a stolen table useless (no guessing helps).
-- Tokens are revoked, never deleted, and a name is never reused, so the `actor` a log row
-- records always names one token.

CREATE TABLE IF NOT EXISTS api_token (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(64) NOT NULL,
  token_hash CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  role VARCHAR(16) NOT NULL,
  -- JSON array of folders inside SOURCE_ROOTS this token may back up; NULL: all of SOURCE_ROOTS.
  source_roots TEXT NULL,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  last_used_at TIMESTAMP(3) NULL,
  revoked_at TIMESTAMP(3) NULL,
  UNIQUE KEY api_token_name (name),
  UNIQUE KEY api_token_hash (token_hash),
  CONSTRAINT api_token_role CHECK (role IN ('admin', 'operator', 'viewer'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

INSERT INTO schema_migrations (version) VALUES ('002_api_token') ON DUPLICATE KEY UPDATE version = version;
