-- The write path's pages again (issue 4): the answer kept for a carrier's retries moves from its own
-- table into the call log, on the last step of the request it answered (`Answer.step` is that
-- step). A request then writes one B-tree fewer: its steps and its answer go in the same rows.
-- A retry finds its answer through the call log's (call_id, seq) index: a call has a few dozen
-- steps at most.
DROP TRIGGER call_events_append_only;

ALTER TABLE call_events ADD COLUMN request_key TEXT;
ALTER TABLE call_events ADD COLUMN fingerprint TEXT;
ALTER TABLE call_events ADD COLUMN answer TEXT;

UPDATE call_events
SET request_key = r.key, fingerprint = r.fingerprint, answer = r.response
FROM call_responses r
WHERE r.call_id = call_events.call_id AND call_events.seq = json_extract(r.response, '$.step');

-- The call log is append-only: an event, once written, is never rewritten.
CREATE TRIGGER call_events_append_only BEFORE UPDATE ON call_events
BEGIN
    SELECT RAISE(ABORT, 'call_events is append-only');
END;

DROP TABLE call_responses;
