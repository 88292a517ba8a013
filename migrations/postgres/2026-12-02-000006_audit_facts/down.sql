-- Rows recorded as facts only have no stored JSON; going back keeps the rows that have it.
DELETE FROM audit_events WHERE content IS NULL;
ALTER TABLE audit_events ALTER COLUMN content SET NOT NULL;
ALTER TABLE audit_events DROP COLUMN detail;
