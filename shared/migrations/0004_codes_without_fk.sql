-- Bulk minting writes a million codes with one COPY, and the foreign key from codes to links
-- checks the link once per row: measured on this machine, a million codes cost the Postgres
-- backend 5.6-5.9 s of CPU with the key and 2.2-2.4 s without it (wall 10.4-10.7 s against
-- 5.3-5.6 s). Codes are only written by shared.minting.mint, for a link the caller has just read
-- under its organisation in the same transaction, and links are never deleted, so the key
-- guarded nothing the code does not already guarantee. The redirector's join is unaffected.
ALTER TABLE codes DROP CONSTRAINT IF EXISTS codes_link_id_fkey;
