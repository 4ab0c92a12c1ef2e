-- The redirectors' filter of minted codes catches up on codes minted without an announcement
-- (`shared.link_cache.cache_codes`) by asking for the codes created since its last look, every
-- minute: this index makes that a range scan instead of a scan of every code. Rows of one bulk
-- COPY share one created_at (the transaction's start), so the index stays small and in order.
CREATE INDEX IF NOT EXISTS codes_created_idx ON codes (created_at);
