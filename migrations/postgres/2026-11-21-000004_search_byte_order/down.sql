ALTER TABLE search_uri ALTER COLUMN value TYPE TEXT COLLATE "default";
ALTER TABLE search_token ALTER COLUMN text_norm TYPE TEXT COLLATE "default";
ALTER TABLE search_string ALTER COLUMN value_norm TYPE TEXT COLLATE "default";
