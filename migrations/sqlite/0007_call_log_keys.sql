-- The write path's pages (issue 4): every page a commit touches is written to the WAL again, so the
-- call log and the stored answers lose a B-tree each.
-- * call_events: a plain rowid instead of AUTOINCREMENT (which rewrote sqlite_sequence on every
--   insert); (call_id, seq) stays its unique identity.
-- * call_responses: stored in its primary key's B-tree (WITHOUT ROWID) instead of a table plus
--   an index.
CREATE TABLE call_events_v2 (
    id       INTEGER PRIMARY KEY,
    call_id  TEXT NOT NULL REFERENCES calls(call_id) ON DELETE CASCADE,
    seq      BIGINT NOT NULL,
    at       BIGINT NOT NULL,
    kind     TEXT NOT NULL,
    data     TEXT NOT NULL,
    UNIQUE (call_id, seq)
);
INSERT INTO call_events_v2 (id, call_id, seq, at, kind, data) SELECT id, call_id, seq, at, kind, data FROM call_events;
DROP TABLE call_events;
ALTER TABLE call_events_v2 RENAME TO call_events;

-- The call log is append-only: an event, once written, is never rewritten.
CREATE TRIGGER call_events_append_only BEFORE UPDATE ON call_events
BEGIN
    SELECT RAISE(ABORT, 'call_events is append-only');
END;

CREATE TABLE call_responses_v2 (
    call_id     TEXT NOT NULL REFERENCES calls(call_id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    response    TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (call_id, key)
) WITHOUT ROWID;
INSERT INTO call_responses_v2 SELECT call_id, key, fingerprint, response, created_at FROM call_responses;
DROP TABLE call_responses;
ALTER TABLE call_responses_v2 RENAME TO call_responses;
