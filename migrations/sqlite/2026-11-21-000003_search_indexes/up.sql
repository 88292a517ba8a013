-- Typed search indexes, one row per indexed value, written in the same transaction as the
-- resource version they describe (and replaced by the next). Values are normalised for search.

-- string: value_norm is lower-cased with accents removed (default and :contains); value_exact
-- is as written (:exact).
CREATE TABLE search_string (
    system_id BIGINT NOT NULL,
    resource_pk BIGINT NOT NULL REFERENCES resources (pk),
    param TEXT NOT NULL,
    value_norm TEXT NOT NULL,
    value_exact TEXT NOT NULL
);
CREATE INDEX search_string_lookup ON search_string (system_id, param, value_norm);
CREATE INDEX search_string_resource ON search_string (resource_pk);

-- token: system '' when none; text_norm is the display/text for :text; type_* is an
-- Identifier's type for :of-type.
CREATE TABLE search_token (
    system_id BIGINT NOT NULL,
    resource_pk BIGINT NOT NULL REFERENCES resources (pk),
    param TEXT NOT NULL,
    system TEXT NOT NULL,
    code TEXT NOT NULL,
    text_norm TEXT,
    type_system TEXT,
    type_code TEXT
);
CREATE INDEX search_token_lookup ON search_token (system_id, param, code, system);
CREATE INDEX search_token_resource ON search_token (resource_pk);

-- date: the instant range the value covers, in milliseconds since the epoch, inclusive.
CREATE TABLE search_date (
    system_id BIGINT NOT NULL,
    resource_pk BIGINT NOT NULL REFERENCES resources (pk),
    param TEXT NOT NULL,
    low BIGINT NOT NULL,
    high BIGINT NOT NULL
);
CREATE INDEX search_date_lookup ON search_date (system_id, param, low, high);
CREATE INDEX search_date_resource ON search_date (resource_pk);

-- reference: a relative or resolvable reference as type + id; other absolute URLs and
-- canonicals in url; Reference.identifier for :identifier.
CREATE TABLE search_reference (
    system_id BIGINT NOT NULL,
    resource_pk BIGINT NOT NULL REFERENCES resources (pk),
    param TEXT NOT NULL,
    target_type TEXT,
    target_id TEXT,
    url TEXT,
    identifier_system TEXT,
    identifier_value TEXT
);
CREATE INDEX search_reference_lookup ON search_reference (system_id, param, target_id, target_type);
CREATE INDEX search_reference_target ON search_reference (system_id, target_type, target_id);
CREATE INDEX search_reference_resource ON search_reference (resource_pk);

-- quantity (and number): value with its system/code (unit).
CREATE TABLE search_quantity (
    system_id BIGINT NOT NULL,
    resource_pk BIGINT NOT NULL REFERENCES resources (pk),
    param TEXT NOT NULL,
    value REAL NOT NULL,
    system TEXT NOT NULL,
    code TEXT NOT NULL
);
CREATE INDEX search_quantity_lookup ON search_quantity (system_id, param, value);
CREATE INDEX search_quantity_resource ON search_quantity (resource_pk);

-- uri
CREATE TABLE search_uri (
    system_id BIGINT NOT NULL,
    resource_pk BIGINT NOT NULL REFERENCES resources (pk),
    param TEXT NOT NULL,
    value TEXT NOT NULL
);
CREATE INDEX search_uri_lookup ON search_uri (system_id, param, value);
CREATE INDEX search_uri_resource ON search_uri (resource_pk);

-- Searches by type page in key order; _lastUpdated searches and sorts by time.
CREATE INDEX resources_type_pk ON resources (system_id, resource_type, pk);
CREATE INDEX resources_type_updated ON resources (system_id, resource_type, last_updated);
