-- A visitor's first day, kept on its all-time row, so that a new visitor needs no daily row.
--
-- Daily uniques used to take a daily_visitors row for every (link or campaign, visitor, day) seen:
-- a new visitor cost two rows per scope, the all-time one and the daily one, and every row is an
-- insert into a unique index (the counter's main cost, measured with EXPLAIN ANALYZE). Now the
-- all-time row records the UTC day of the click that made it (first_day), and the rule is:
--   a visitor was seen on scope S on day D  <=>  S's all-time row has first_day = D,
--                                                 or daily_visitors has (D, S, visitor).
-- A click on D by a new visitor inserts only the all-time row (first_day = D); a click by a known
-- visitor on a day other than its first_day inserts the daily row as before. first_day is NULL on
-- the rows written before this migration: NULL equals no day, so those visitors keep going
-- through daily_visitors, which already holds their days. Adding a NULL column rewrites nothing.
ALTER TABLE link_visitors ADD COLUMN first_day date;
ALTER TABLE campaign_visitors ADD COLUMN first_day date;

-- Raised by the counting statement when a visitor row it conflicted with was committed by a
-- concurrent batch after the statement's snapshot was taken: its first_day cannot be read in this
-- statement, so the batch is rolled back and counted again (serialization_failure is retriable).
CREATE FUNCTION visitor_committed_concurrently() RETURNS date
    LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION 'a visitor row was committed by a concurrent batch; count this batch again'
        USING ERRCODE = 'serialization_failure';
END
$$;
