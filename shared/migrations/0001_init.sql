-- Organisations, campaigns, links and their short codes; click counters and the counter's
-- bookkeeping (processed event ids, visitors seen per link, partition offsets).

CREATE TABLE orgs (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                  text        NOT NULL,
    link_tracking_enabled boolean     NOT NULL DEFAULT false,
    created_at            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE campaigns (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id     bigint      NOT NULL REFERENCES orgs (id),
    name       text        NOT NULL,
    kind       text        NOT NULL
               CHECK (kind IN ('one_time', 'recurring', 'coupon_expiry_reminder', 'resend')),
    channel    text        NOT NULL DEFAULT 'sms',
    parent_id  bigint      REFERENCES campaigns (id),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX campaigns_org_idx ON campaigns (org_id);

CREATE TABLE links (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id      bigint      NOT NULL REFERENCES orgs (id),
    campaign_id bigint      REFERENCES campaigns (id),
    destination text        NOT NULL CHECK (destination ~ '^https?://'),
    disabled    boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX links_campaign_idx ON links (campaign_id);

-- One code per (link, recipient); recipient_id is null for a code shared by everyone.
CREATE TABLE codes (
    code         text        PRIMARY KEY,
    link_id      bigint      NOT NULL REFERENCES links (id),
    recipient_id text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX codes_link_recipient_idx ON codes (link_id, recipient_id) NULLS NOT DISTINCT;

-- Event ids already counted: inserting with ON CONFLICT DO NOTHING tells a new event from a
-- redelivered one.
CREATE TABLE processed_events (
    event_id     uuid        PRIMARY KEY,
    processed_at timestamptz NOT NULL DEFAULT now()
);

-- Visitors seen per link: a row inserted here is a unique click.
CREATE TABLE link_visitors (
    link_id    bigint      NOT NULL,
    visitor_id text        NOT NULL,
    first_seen timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (link_id, visitor_id)
);

CREATE TABLE link_counters (
    link_id       bigint      PRIMARY KEY,
    total_clicks  bigint      NOT NULL DEFAULT 0,
    unique_clicks bigint      NOT NULL DEFAULT 0,
    bot_clicks    bigint      NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- The counter's source of truth for where to resume: written in the same transaction as the
-- counts, so a crash can never count a batch without also moving past it.
CREATE TABLE consumer_offsets (
    group_id    text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    next_offset bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);
