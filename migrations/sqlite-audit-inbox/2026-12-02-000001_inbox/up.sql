-- The read audit inbox of a SQLite database: AuditEvents of reads, appended by the server's audit
-- writer (one small commit per group of reads: no index to update, one page to write), and moved
-- in bulk into the main database's audit_events, where they are indexed and searched. It is a
-- file of its own so that these commits neither wait for the main database's writer nor make
-- every reader of the main database drop its page cache.
CREATE TABLE audit_inbox (
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
    detail TEXT NOT NULL
);
