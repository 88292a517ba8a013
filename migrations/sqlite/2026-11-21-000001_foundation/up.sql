-- Local systems: one FHIR base each; every other row carries the system it belongs to.
CREATE TABLE local_systems (
    id INTEGER PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

INSERT INTO local_systems (slug, name, created_at)
VALUES ('default', 'Default local system', CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));

-- The current state of each resource: which version is current and whether it is deleted.
-- The JSON itself lives once per version in resource_versions.
CREATE TABLE resources (
    pk INTEGER PRIMARY KEY,
    system_id BIGINT NOT NULL REFERENCES local_systems (id),
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    version_id BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL,
    UNIQUE (system_id, resource_type, id)
);

-- Every version of every resource, deletes as tombstones (content NULL).
-- last_updated is milliseconds since the Unix epoch.
CREATE TABLE resource_versions (
    seq INTEGER PRIMARY KEY,
    resource_pk BIGINT NOT NULL REFERENCES resources (pk),
    system_id BIGINT NOT NULL REFERENCES local_systems (id),
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    version_id BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    method TEXT NOT NULL,
    content TEXT,
    UNIQUE (resource_pk, version_id)
);

CREATE INDEX resource_versions_system_history ON resource_versions (system_id, last_updated, seq);
CREATE INDEX resource_versions_type_history ON resource_versions (system_id, resource_type, last_updated, seq);
