-- Who accessed what: one AuditEvent per access to patient data, never updated or deleted
-- through the API. content is the AuditEvent resource as served.
CREATE TABLE audit_events (
    seq BIGSERIAL NOT NULL,
    system_id BIGINT NOT NULL,
    id TEXT NOT NULL,
    recorded BIGINT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    agent TEXT NOT NULL,
    patient_id TEXT,
    entity TEXT,
    break_glass BOOLEAN NOT NULL,
    content TEXT NOT NULL,
    PRIMARY KEY (system_id, seq),
    UNIQUE (system_id, id)
);
CREATE INDEX audit_events_patient ON audit_events (system_id, patient_id, recorded);
CREATE INDEX audit_events_agent ON audit_events (system_id, agent, recorded);
CREATE INDEX audit_events_recorded ON audit_events (system_id, recorded);
