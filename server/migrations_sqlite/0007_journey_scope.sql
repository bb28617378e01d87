-- As /migrations/0008 (portable SQL).
-- Who may see which journey (sync scopes): each journey's location, date and crew,
-- read from its document whenever a change creates it or changes its crew.
-- `as_of` is the tenant's log head the row was read at: a slower writer never
-- puts back an older reading over a newer one.
CREATE TABLE journey_scope (
    tenant      TEXT   NOT NULL,
    journey_id  UUID   NOT NULL,
    location_id UUID   NOT NULL,
    -- The journey's local date, YYYY-MM-DD (compares as text).
    day         TEXT   NOT NULL,
    as_of       BIGINT NOT NULL,
    PRIMARY KEY (tenant, journey_id)
);
CREATE INDEX journey_scope_location ON journey_scope (tenant, location_id);

CREATE TABLE journey_crew (
    tenant     TEXT NOT NULL,
    journey_id UUID NOT NULL,
    user_id    UUID NOT NULL,
    PRIMARY KEY (tenant, journey_id, user_id)
);
CREATE INDEX journey_crew_user ON journey_crew (tenant, user_id);
