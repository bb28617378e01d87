-- Row-level security: a second wall behind the tenant filter every query already
-- has. The server sets `crewsync.tenant` at the start of each transaction
-- (`set_config(..., true)`, so it ends with the transaction and never leaks to
-- the pool's next user); a row is visible and writable only when its tenant is
-- the one set. With nothing set, no rows match: a query that forgot to say its
-- tenant finds nothing instead of everyone's data.
--
-- FORCE applies the policies to the tables' owner too, which is the role the
-- server connects and migrates as. Superusers and BYPASSRLS roles are not
-- subject to them; the server warns at start when it runs as one.
CREATE FUNCTION crewsync_tenant() RETURNS text
    LANGUAGE sql STABLE
    AS $$ SELECT current_setting('crewsync.tenant', true) $$;

ALTER TABLE change_log        ENABLE ROW LEVEL SECURITY;
ALTER TABLE change_log        FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON change_log
    USING (tenant = crewsync_tenant()) WITH CHECK (tenant = crewsync_tenant());

ALTER TABLE log_heads         ENABLE ROW LEVEL SECURITY;
ALTER TABLE log_heads         FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON log_heads
    USING (tenant = crewsync_tenant()) WITH CHECK (tenant = crewsync_tenant());

ALTER TABLE journey_snapshots ENABLE ROW LEVEL SECURITY;
ALTER TABLE journey_snapshots FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON journey_snapshots
    USING (tenant = crewsync_tenant()) WITH CHECK (tenant = crewsync_tenant());

ALTER TABLE quarantine        ENABLE ROW LEVEL SECURITY;
ALTER TABLE quarantine        FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON quarantine
    USING (tenant = crewsync_tenant()) WITH CHECK (tenant = crewsync_tenant());

ALTER TABLE audit_log         ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log         FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON audit_log
    USING (tenant = crewsync_tenant()) WITH CHECK (tenant = crewsync_tenant());

ALTER TABLE journey_scope     ENABLE ROW LEVEL SECURITY;
ALTER TABLE journey_scope     FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON journey_scope
    USING (tenant = crewsync_tenant()) WITH CHECK (tenant = crewsync_tenant());

ALTER TABLE journey_crew      ENABLE ROW LEVEL SECURITY;
ALTER TABLE journey_crew      FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON journey_crew
    USING (tenant = crewsync_tenant()) WITH CHECK (tenant = crewsync_tenant());
