-- The audit trail stores the facts of each access (columns, and the rest as compact JSON in
-- detail); the AuditEvent resource is rendered from them when it is read. It grows with every
-- read of patient data, and rendered JSON was most of each row. content stays for the rows
-- recorded before; new rows leave it NULL.
CREATE TABLE audit_events_facts (
    seq INTEGER PRIMARY KEY,
    system_id BIGINT NOT NULL,
    id TEXT NOT NULL,
    recorded BIGINT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    agent TEXT NOT NULL,
    patient_id TEXT,
    entity TEXT,
    break_glass BOOLEAN NOT NULL,
    detail TEXT,
    content TEXT,
    UNIQUE (system_id, id)
);
INSERT INTO audit_events_facts
    (seq, system_id, id, recorded, action, outcome, agent, patient_id, entity, break_glass, content)
SELECT seq, system_id, id, recorded, action, outcome, agent, patient_id, entity, break_glass, content
FROM audit_events;
DROP TABLE audit_events;
ALTER TABLE audit_events_facts RENAME TO audit_events;
CREATE INDEX audit_events_patient ON audit_events (system_id, patient_id, recorded);
CREATE INDEX audit_events_agent ON audit_events (system_id, agent, recorded);
CREATE INDEX audit_events_recorded ON audit_events (system_id, recorded);
