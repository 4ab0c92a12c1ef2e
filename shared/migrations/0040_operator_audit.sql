-- The operators' audit trail (shared/audit.py): every operator action (an organisation created,
-- link tracking switched, a key issued or revoked, a short domain or a DLT whitelist entry
-- changed) with its time, the operator credential's name and the support ticket it answers.
--
-- `action` is checked by its spelling, not against a list: the list lives in shared/audit.py
-- (`ACTIONS`), and other features add actions without a migration each. Rows are only ever
-- inserted; an organisation is never deleted, so the key to it holds.
CREATE TABLE operator_audit (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    operator text        NOT NULL CHECK (operator <> '' AND length(operator) <= 200),
    action   text        NOT NULL CHECK (action ~ '^[a-z][a-z_]{0,31}\.[a-z][a-z_]{0,31}$'),
    org_id   bigint      REFERENCES orgs (id),
    ticket   text        CHECK (ticket <> '' AND length(ticket) <= 100),
    detail   jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX operator_audit_org_idx ON operator_audit (org_id, id);

-- Switching an organisation's tracking drops its links from the redirectors' caches: find them
-- without reading the whole table.
CREATE INDEX links_org_idx ON links (org_id);
