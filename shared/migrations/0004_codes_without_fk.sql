-- Bulk minting writes a million codes with one COPY, and the foreign key from codes to links
-- costs one lookup of the link per row: about half the time of a bulk mint (bench/mint). Codes
-- are only written by shared.minting.mint, for a link it has just read in the same transaction
-- (under the caller's organisation), and links are never deleted, so the key guarded nothing
-- the code does not already guarantee. The redirector's join is unaffected.
ALTER TABLE codes DROP CONSTRAINT IF EXISTS codes_link_id_fkey;
