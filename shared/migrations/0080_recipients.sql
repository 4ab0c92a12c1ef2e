-- Pseudonymous recipients (shared/recipients.py): codes and visitor rows carry a keyed pseudonym
-- of the sender's recipient id, never the id itself. The way back lives here only: the id sealed
-- with AES-256-GCM under the organisation's key (derived from RECIPIENT_KEY, which the database
-- never sees). Erasure deletes the row (shared/erasure.py).
CREATE TABLE recipients (
    org_id     bigint      NOT NULL REFERENCES orgs (id),
    pseudonym  text        NOT NULL CHECK (pseudonym ~ '^[0-9a-f]{32}$'),
    sealed_id  bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, pseudonym)
);

-- The recipient ids stored as given before this migration, per organisation: `clicktrack
-- migrate` (which holds RECIPIENT_KEY) turns each into its pseudonym in codes and visitor rows,
-- seals it into `recipients`, and deletes it from here (shared/erasure.py, pseudonymise_legacy).
CREATE TABLE legacy_recipient_ids (
    org_id       bigint NOT NULL,
    recipient_id text   NOT NULL,
    PRIMARY KEY (org_id, recipient_id)
);
INSERT INTO legacy_recipient_ids (org_id, recipient_id)
SELECT DISTINCT l.org_id, c.recipient_id
FROM codes c JOIN links l ON l.id = c.link_id
WHERE c.recipient_id IS NOT NULL;

-- Erasures and purges the counter must still apply to events already on the topic: a recipient's
-- old pseudonym and the random one that replaced it, or (pseudonym NULL) a purged organisation,
-- whose late events are dropped. Kept as long as the event ids (DEDUP_RETENTION_DAYS), since the
-- topic holds the old pseudonym that long anyway; then deleted.
CREATE TABLE privacy_tombstones (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id      bigint      NOT NULL,
    pseudonym   text,
    replacement text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((pseudonym IS NULL) = (replacement IS NULL))
);

-- Called first in each counting transaction: waits for an erasure or purge being written (which
-- holds ROW EXCLUSIVE on the table) and keeps the next one waiting until the batch committed, so
-- a batch either sees a tombstone or was counted before the erasure renamed what it wrote.
CREATE FUNCTION privacy_tombstones_version() RETURNS bigint
    LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    LOCK TABLE privacy_tombstones IN SHARE MODE;
    RETURN (SELECT coalesce(max(id), 0) FROM privacy_tombstones);
END
$$;
