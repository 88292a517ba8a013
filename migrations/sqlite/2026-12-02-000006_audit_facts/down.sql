-- Rows recorded as facts only have no stored JSON; going back keeps the rows that have it.
CREATE TABLE audit_events_json (
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
    content TEXT NOT NULL,
    UNIQUE (system_id, id)
);
INSERT INTO audit_events_json
    (seq, system_id, id, recorded, action, outcome, agent, patient_id, entity, break_glass, content)
SELECT seq, system_id, id, recorded, action, outcome, agent, patient_id, entity, break_glass, content
FROM audit_events WHERE content IS NOT NULL;
DROP TABLE audit_events;
ALTER TABLE audit_events_json RENAME TO audit_events;
CREATE INDEX audit_events_patient ON audit_events (system_id, patient_id, recorded);
CREATE INDEX audit_events_agent ON audit_events (system_id, agent, recorded);
CREATE INDEX audit_events_recorded ON audit_events (system_id, recorded);
