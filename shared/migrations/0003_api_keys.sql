-- API keys of organisations: only the SHA-256 of a key is stored (the key is shown once), with a
-- short prefix so a person can tell keys apart in listings.
CREATE TABLE api_keys (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id     bigint      NOT NULL REFERENCES orgs (id),
    name       text        NOT NULL,
    prefix     text        NOT NULL,
    key_hash   bytea       NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX api_keys_org_idx ON api_keys (org_id);

-- When an operator last switched link tracking on or off.
ALTER TABLE orgs ADD COLUMN tracking_changed_at timestamptz;

-- Rendering finds a campaign's link by destination; a resend walks up to the campaign it resends.
CREATE INDEX links_campaign_destination_idx ON links (campaign_id, md5(destination));
CREATE INDEX campaigns_parent_idx ON campaigns (parent_id);
