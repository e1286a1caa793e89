-- The write path's pages again (issue 4): the answer kept for a carrier's retries moves from its own
-- table into the call log, on the last step of the request it answered (`Answer.step` is that
-- step). A request then writes one table and one index fewer: its steps and its answer go in the
-- same rows. A retry finds its answer through the call log's primary key (call_id, seq): a call
-- has a few dozen steps at most.
ALTER TABLE call_events ADD COLUMN request_key TEXT, ADD COLUMN fingerprint TEXT, ADD COLUMN answer TEXT;

ALTER TABLE call_events DISABLE TRIGGER call_events_append_only;
UPDATE call_events e
SET request_key = r.key, fingerprint = r.fingerprint, answer = r.response
FROM call_responses r
WHERE r.call_id = e.call_id AND e.seq = (r.response::json ->> 'step')::bigint;
ALTER TABLE call_events ENABLE TRIGGER call_events_append_only;

DROP TABLE call_responses;
