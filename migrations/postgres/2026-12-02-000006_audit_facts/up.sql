-- The audit trail stores the facts of each access (columns, and the rest as compact JSON in
-- detail); the AuditEvent resource is rendered from them when it is read. It grows with every
-- read of patient data, and rendered JSON was most of each row. content stays for the rows
-- recorded before; new rows leave it NULL.
ALTER TABLE audit_events ADD COLUMN detail TEXT;
ALTER TABLE audit_events ALTER COLUMN content DROP NOT NULL;
