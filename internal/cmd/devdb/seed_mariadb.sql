-- The demo's schema on the new database (MariaDB), the same as on Postgres
-- and empty, as before a backfill. utf8mb4_bin compares text byte by byte
-- like the Postgres database (created with the C locale), so the UNIQUE
-- constraint on email accepts exactly what Postgres accepts.
CREATE TABLE accounts (
    id         BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    email      VARCHAR(255) NOT NULL UNIQUE,
    balance    DECIMAL(12,2) NOT NULL DEFAULT 0,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
