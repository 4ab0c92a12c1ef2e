-- Resends to non-clickers (issue 17, part 4): one call makes a resend campaign whose audience is
-- the original's non-clickers (or the non-openers of one of its links), each keeping their code.
--
-- resends: what the resend's messages are (a template and its values, the same for everyone;
-- each recipient's short links differ), so that any page of them can be rendered again, and
-- which links of the original the messages carry.
-- resend_audience: one row per recipient it was sent to, with what the counter held for them on
-- the family's links when the resend was made. A reused code's clicks are counted on the
-- original's link (the code is the original's); the resend's own numbers are the audience's
-- clicks since, exactly: now minus then (shared/resends.py, docs/counting.md).
-- recipient_id keeps the collation of codes.recipient_id: the lists are pages in that order.

CREATE TABLE resends (
    campaign_id  bigint   PRIMARY KEY REFERENCES campaigns (id) ON DELETE CASCADE,
    parent_id    bigint   NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    link_id      bigint,
    template     text     NOT NULL,
    slot_types   text[],
    slot_values  text[]   NOT NULL,
    var_limit    integer,
    message_urls text[]   NOT NULL,
    message_links bigint[] NOT NULL,
    audience     bigint   NOT NULL
);

CREATE TABLE resend_audience (
    campaign_id    bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    recipient_id   text   NOT NULL,
    clicks_before  bigint NOT NULL,
    bots_before    bigint NOT NULL,
    expired_before bigint NOT NULL,
    PRIMARY KEY (campaign_id, recipient_id)
);
