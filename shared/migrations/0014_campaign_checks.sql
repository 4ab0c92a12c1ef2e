-- Campaign kinds and channels reach SQL from their one source, shared/campaigns.py
-- (`CAMPAIGN_KINDS`, `CHANNEL_PATTERN`); tests/unit/test_campaign_checks.py holds these lists
-- equal to it. Adding a kind: a new migration that drops and re-adds both kind checks.
--
-- The checks are validated here, against the rows already stored: every value the API and the
-- counter have written so far is legal (the API checked both, and the counter's hourly rows come
-- from events whose campaigns it did), and a value that is not fails this migration loudly
-- rather than hiding behind NOT VALID. Migrations run in one transaction at start-up, before
-- the services write, so NOT VALID then VALIDATE would not shorten any lock here.
-- The counter's decoder refuses events these checks would refuse (to the dead-letter topic), so
-- one bad event can never fail a whole batch.

ALTER TABLE campaigns DROP CONSTRAINT campaigns_kind_check;
ALTER TABLE campaigns
    ADD CONSTRAINT campaigns_kind_check
        CHECK (kind IN ('one_time', 'recurring', 'coupon_expiry_reminder', 'resend')),
    ADD CONSTRAINT campaigns_channel_check
        CHECK (channel ~ '^[a-z][a-z0-9_]{0,31}(?!\n)$');

ALTER TABLE hourly_counters
    ADD CONSTRAINT hourly_counters_campaign_kind_check
        CHECK (campaign_kind IN ('one_time', 'recurring', 'coupon_expiry_reminder', 'resend')),
    ADD CONSTRAINT hourly_counters_channel_check
        CHECK (channel ~ '^[a-z][a-z0-9_]{0,31}(?!\n)$');
