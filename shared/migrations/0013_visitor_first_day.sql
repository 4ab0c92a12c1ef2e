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

-- The first day of a visitor row that the counting statement conflicted with but cannot see: a
-- concurrent batch committed it after the statement began (the insert waited for that commit).
-- A VOLATILE function's queries each take a fresh snapshot, which sees the row. Called only in
-- that race; '-infinity' stands for a row from before this migration (no first_day).
CREATE FUNCTION visitor_first_day(scope "char", scope_id bigint, visitor text) RETURNS date
    LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    found date;
BEGIN
    IF scope = 'l' THEN
        SELECT coalesce(v.first_day, '-infinity') INTO found FROM link_visitors v
        WHERE v.link_id = scope_id AND v.visitor_id = visitor;
    ELSE
        SELECT coalesce(v.first_day, '-infinity') INTO found FROM campaign_visitors v
        WHERE v.campaign_id = scope_id AND v.visitor_id = visitor;
    END IF;
    IF found IS NULL THEN
        RAISE EXCEPTION 'visitor row of % % not found; count the batch again', scope, scope_id
            USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN found;
END
$$;
