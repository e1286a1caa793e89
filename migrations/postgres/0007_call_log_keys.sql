-- The write path's pages (issue 4): the call log loses its surrogate key and that key's index;
-- (call_id, seq), already unique, becomes its primary key.
ALTER TABLE call_events DROP COLUMN id;
ALTER TABLE call_events DROP CONSTRAINT call_events_call_id_seq_key;
ALTER TABLE call_events ADD CONSTRAINT call_events_pkey PRIMARY KEY (call_id, seq);
