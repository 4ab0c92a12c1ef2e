-- A link may expire; after that the redirector sends visitors to its fallback URL, or answers 410.
ALTER TABLE links
    ADD COLUMN expires_at   timestamptz,
    ADD COLUMN fallback_url text CHECK (fallback_url ~ '^https?://');
