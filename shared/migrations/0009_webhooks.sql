-- Webhook endpoints: where the relay posts an organisation's human clicks, signed with the
-- endpoint's secret (Standard Webhooks: HMAC-SHA256 over id.timestamp.body). The secret has to
-- be readable to sign with it, so it is stored as is: restrict who can read this table, and
-- never log the column.
CREATE TABLE webhook_endpoints (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id     bigint      NOT NULL REFERENCES orgs (id),
    url        text        NOT NULL CHECK (url ~ '^https?://'),
    secret     text        NOT NULL CHECK (secret LIKE 'whsec_%'),
    enabled    boolean     NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, url)
);
CREATE INDEX webhook_endpoints_org_idx ON webhook_endpoints (org_id) WHERE enabled;
