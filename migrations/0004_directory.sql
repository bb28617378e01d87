-- Tenants and the people in them (issue 4): the seed's Client, Location, User,
-- RolePermission and MoveSource. Times are milliseconds since the Unix epoch, so
-- the same statements serve Postgres and the embedded SQLite store.
--
-- `change_log.tenant` and every other table's `tenant` hold the tenant id as text
-- (the UUID's hyphenated form).

CREATE TABLE tenants (
    id           UUID    PRIMARY KEY,
    slug         TEXT    NOT NULL UNIQUE,
    name         TEXT    NOT NULL,
    industry     TEXT,
    is_franchise BOOLEAN NOT NULL DEFAULT false,
    settings     TEXT    NOT NULL DEFAULT '{}',
    created_at   BIGINT  NOT NULL
);

CREATE TABLE locations (
    id            UUID    PRIMARY KEY,
    tenant        TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    timezone      TEXT    NOT NULL,
    address       TEXT,
    is_corporate  BOOLEAN NOT NULL DEFAULT false,
    storage_type  TEXT    NOT NULL DEFAULT 'NONE' CHECK (storage_type IN ('NONE', 'LOCKER', 'POD')),
    customer_care BOOLEAN NOT NULL DEFAULT false,
    trucks        INTEGER NOT NULL DEFAULT 0 CHECK (trucks >= 0),
    contact       TEXT,
    UNIQUE (tenant, name)
);

CREATE TABLE users (
    id            UUID   PRIMARY KEY,
    tenant        TEXT   NOT NULL,
    location_id   UUID   NOT NULL REFERENCES locations (id),
    name          TEXT   NOT NULL,
    email         TEXT   NOT NULL UNIQUE,
    role          TEXT   NOT NULL CHECK (role IN ('ADMIN', 'DISPATCHER', 'DRIVER', 'MOVER', 'MANAGER', 'AUDITOR')),
    status        TEXT   NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'INACTIVE', 'SUSPENDED')),
    password_hash TEXT,
    created_at    BIGINT NOT NULL
);
CREATE INDEX users_tenant ON users (tenant, location_id);

CREATE TABLE role_permissions (
    tenant      TEXT    NOT NULL,
    role        TEXT    NOT NULL,
    step        INTEGER NOT NULL CHECK (step BETWEEN 1 AND 4),
    can_view    BOOLEAN NOT NULL,
    can_edit    BOOLEAN NOT NULL,
    can_approve BOOLEAN NOT NULL,
    PRIMARY KEY (tenant, role, step)
);

CREATE TABLE move_sources (
    id          UUID    PRIMARY KEY,
    tenant      TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    description TEXT,
    is_active   BOOLEAN NOT NULL DEFAULT true,
    UNIQUE (tenant, name)
);
