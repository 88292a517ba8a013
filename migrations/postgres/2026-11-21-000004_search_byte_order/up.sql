-- Prefix searches compare ranges: a string starts with 'alvarez' when it is >= 'alvarez' and
-- < 'alvare{' (the prefix with its last character incremented), and :below works the same way on
-- uris. That holds in byte order only. Under a linguistic collation (the default of a database
-- created with, say, en_GB.UTF-8 or an ICU locale) punctuation such as '{' or ':' is ignored at
-- first, so 'alvarez' sorts after 'alvare{' and the search finds nothing. The compared columns are
-- normalised already (case and accents folded), so byte order is also the right order to sort
-- them by. SQLite compares bytes (BINARY) throughout and needs no change.
ALTER TABLE search_string ALTER COLUMN value_norm TYPE TEXT COLLATE "C";
ALTER TABLE search_token ALTER COLUMN text_norm TYPE TEXT COLLATE "C";
ALTER TABLE search_uri ALTER COLUMN value TYPE TEXT COLLATE "C";
