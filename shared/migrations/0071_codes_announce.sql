-- Every statement that inserts codes (the API's and the CLI's COPY, a single INSERT) announces
-- them on the notification channel `ct_codes_minted`, at most 700 codes a message (the payload
-- limit is 8,000 bytes), delivered when the transaction commits. Each redirector listens and
-- adds them to its filter of minted codes, so a code is known there before anyone can tap it,
-- whichever path minted it (services/redirector/minted.py). A statement-level trigger with a
-- transition table: one call per statement, not per row.
CREATE OR REPLACE FUNCTION announce_codes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    chunk text;
BEGIN
    FOR chunk IN
        SELECT string_agg(code, ' ')
        FROM (SELECT code, (row_number() OVER ()) / 700 AS part FROM new_codes) numbered
        GROUP BY part
    LOOP
        PERFORM pg_notify('ct_codes_minted', chunk);
    END LOOP;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS codes_announce ON codes;
CREATE TRIGGER codes_announce AFTER INSERT ON codes
    REFERENCING NEW TABLE AS new_codes
    FOR EACH STATEMENT EXECUTE FUNCTION announce_codes();
