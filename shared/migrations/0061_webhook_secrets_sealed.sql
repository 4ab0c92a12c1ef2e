-- Webhook signing secrets at rest: sealed with AES-256-GCM under a key derived from
-- WEBHOOK_SECRET_KEY (services/relay/endpoints.py), which the database never sees. The clear
-- column stays only for the rows written before this migration, until `clicktrack migrate`
-- seals them (and empties it); new rows never fill it.
ALTER TABLE webhook_endpoints ADD COLUMN sealed_secret bytea;
ALTER TABLE webhook_endpoints ALTER COLUMN secret DROP NOT NULL;
ALTER TABLE webhook_endpoints
    ADD CONSTRAINT webhook_endpoints_one_secret CHECK ((secret IS NULL) <> (sealed_secret IS NULL));
