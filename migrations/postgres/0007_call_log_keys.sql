-- The write path's pages (issue 4): the call log loses its surrogate key and that key's index;
-- (call_id, seq), already unique, becomes its primary key.
ALTER TABLE call_events DROP COLUMN id;
ALTER TABLE call_events DROP CONSTRAINT call_events_call_id_seq_key;
ALTER TABLE call_events ADD CONSTRAINT call_events_pkey PRIMARY KEY (call_id, seq);

-- A call's row is rewritten on every event. Room left on each page lets PostgreSQL update it in
-- place when no indexed column changes (a HOT update: no new entry in any of the calls' 13
-- indexes), instead of a new row version on another page. (In the webhook benchmark 1 update in 6
-- is HOT: a call's language, area, town and outcome, all indexed, are set one by one.)
ALTER TABLE calls SET (fillfactor = 70);
