-- Local systems: one FHIR base each; every other row carries the system it belongs to.
-- Keys of tenant tables lead with system_id, the natural shard key (Citus distribution column).
CREATE TABLE local_systems (
    id BIGSERIAL PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

INSERT INTO local_systems (slug, name, created_at)
VALUES ('default', 'Default local system', (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT);

-- The current state of each resource: which version is current and whether it is deleted.
-- The JSON itself lives once per version in resource_versions.
CREATE TABLE resources (
    pk BIGSERIAL NOT NULL,
    system_id BIGINT NOT NULL REFERENCES local_systems (id),
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    version_id BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL,
    PRIMARY KEY (system_id, pk),
    UNIQUE (system_id, resource_type, id)
);
CREATE UNIQUE INDEX resources_pk ON resources (pk);

-- Every version of every resource, deletes as tombstones (content NULL).
-- last_updated is milliseconds since the Unix epoch.
CREATE TABLE resource_versions (
    seq BIGSERIAL NOT NULL,
    resource_pk BIGINT NOT NULL,
    system_id BIGINT NOT NULL,
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    version_id BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    method TEXT NOT NULL,
    content TEXT,
    PRIMARY KEY (system_id, seq),
    UNIQUE (system_id, resource_pk, version_id),
    FOREIGN KEY (system_id, resource_pk) REFERENCES resources (system_id, pk)
);

CREATE INDEX resource_versions_system_history ON resource_versions (system_id, last_updated, seq);
CREATE INDEX resource_versions_type_history ON resource_versions (system_id, resource_type, last_updated, seq);
