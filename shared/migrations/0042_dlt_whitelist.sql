-- What an organisation has whitelisted on its DLT portal (shared/whitelist.py): short domains
-- with the headers they are whitelisted for (no header: every header of the sender), and URL
-- prefixes of the links it sends untracked; each with the portal's reference and date.
-- Rendering refuses a link the operators would block, naming the entry to whitelist.
CREATE TABLE dlt_whitelist (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id         bigint      NOT NULL REFERENCES orgs (id),
    kind           text        NOT NULL CHECK (kind IN ('short_domain', 'url')),
    value          text        NOT NULL CHECK (length(value) BETWEEN 1 AND 2048),
    header         text        CHECK (header ~ '^[A-Z0-9]{6}(?!\n)$'),
    dlt_ref        text        CHECK (length(dlt_ref) BETWEEN 1 AND 100),
    whitelisted_on date,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (kind = 'short_domain' OR header IS NULL)
);
CREATE UNIQUE INDEX dlt_whitelist_entry_idx
    ON dlt_whitelist (org_id, kind, value, header) NULLS NOT DISTINCT;

-- Whether rendering checks links against the whitelist: on for organisations created from now
-- on; off for those that exist already, until an operator has imported their whitelist and
-- switches it on (`clicktrack org whitelist-check ORG on`), so no running send breaks.
ALTER TABLE orgs ADD COLUMN dlt_whitelist_check boolean NOT NULL DEFAULT false;
ALTER TABLE orgs ALTER COLUMN dlt_whitelist_check SET DEFAULT true;
