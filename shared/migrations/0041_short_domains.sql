-- Short domains of organisations (shared/domains.py): each brand whitelists its own short domain
-- on DLT, so the redirector resolves by host and code. A domain belongs to one organisation at a
-- time; at most one of an organisation's domains is its default. Organisations without a domain
-- use the global SHORT_DOMAIN.
CREATE TABLE short_domains (
    domain     text        PRIMARY KEY
               CHECK (domain ~ '^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$'
                      AND length(domain) <= 253),
    org_id     bigint      NOT NULL REFERENCES orgs (id),
    is_default boolean     NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX short_domains_org_idx ON short_domains (org_id);
CREATE UNIQUE INDEX short_domains_one_default_idx ON short_domains (org_id) WHERE is_default;

-- The DLT header (sender id) a campaign is sent under, and the short domain it names (one of its
-- organisation's; null: the organisation's default). An organisation may ask for the header in
-- the path of its short links (`https://s.brand.in/ABCDEF/7383936D89`).
ALTER TABLE campaigns
    ADD COLUMN dlt_header   text CHECK (dlt_header ~ '^[A-Z0-9]{6}(?!\n)$'),
    ADD COLUMN short_domain text;
ALTER TABLE orgs ADD COLUMN header_in_path boolean NOT NULL DEFAULT false;
