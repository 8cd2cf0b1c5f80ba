-- The DeepStack / CodeProject.AI detection API on the relay (relay/vision.py): every tier gets a rate and
-- a burst for it, enforced like the Pro rate (GCRA in Redis, relay/ratelimit.py); the Pro rate still
-- applies on top. Such a request is a 1-moment event on the Pro lane and never charges the Guardian quota.
ALTER TABLE tiers
    ADD COLUMN vision_rate_per_s double precision NOT NULL DEFAULT 1 CHECK (vision_rate_per_s > 0),
    ADD COLUMN vision_burst integer NOT NULL DEFAULT 10 CHECK (vision_burst >= 1);
UPDATE tiers SET vision_rate_per_s = 1, vision_burst = 10 WHERE name = 'guardian';
UPDATE tiers SET vision_rate_per_s = 5, vision_burst = 20 WHERE name = 'pro';
