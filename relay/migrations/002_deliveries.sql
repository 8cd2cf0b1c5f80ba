-- Which workers each event was delivered to, kept with its result: a back-fill may replace a result
-- only when it comes from one of them, also after the relay's short-lived delivery record in Redis
-- has expired.
ALTER TABLE results ADD COLUMN delivered_to uuid[] NOT NULL DEFAULT '{}';
