-- Row-level security on the media tables (issue 5), as migration 0009 does for the
-- journey tables: a row is visible and writable only in a transaction bound to
-- its tenant (`crewsync.tenant`), forced on the owner too. Every media query runs
-- in such a transaction; the expiry sweep and the retention purge go tenant by
-- tenant.
ALTER TABLE media_uploads ENABLE ROW LEVEL SECURITY;
ALTER TABLE media_uploads FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON media_uploads
    USING (tenant = crewsync_tenant()) WITH CHECK (tenant = crewsync_tenant());

ALTER TABLE media         ENABLE ROW LEVEL SECURITY;
ALTER TABLE media         FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON media
    USING (tenant = crewsync_tenant()) WITH CHECK (tenant = crewsync_tenant());

ALTER TABLE journey_holds ENABLE ROW LEVEL SECURITY;
ALTER TABLE journey_holds FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON journey_holds
    USING (tenant = crewsync_tenant()) WITH CHECK (tenant = crewsync_tenant());
