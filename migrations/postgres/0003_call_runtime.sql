-- The call runtime: idempotent carrier events, the waiting queue and callback requests.

-- The carrier's own per-call sequence number (JSON webhook), distinct from the call log's.
ALTER TABLE calls ADD COLUMN carrier_seq BIGINT NOT NULL DEFAULT 0;
-- Where the caller said they are (a comune or CAP area), as read back to them.
ALTER TABLE calls ADD COLUMN town TEXT;

-- What the server answered to each carrier request, so a retried request gets the same answer and
-- the call advances once. key: "json:<seq>" or "twiml:<step>:<parameters digest>".
CREATE TABLE call_responses (
    call_id     TEXT NOT NULL REFERENCES calls(call_id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    response    TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (call_id, key)
);

-- Calls waiting for (or talking to) an operator. One row per call; the ACD works on it.
CREATE TABLE queue_entries (
    call_id     TEXT PRIMARY KEY REFERENCES calls(call_id) ON DELETE CASCADE,
    language    TEXT NOT NULL,
    area        TEXT,
    priority    INTEGER NOT NULL,
    entered_at  BIGINT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('waiting', 'assigned', 'answered', 'abandoned', 'left')),
    operator    TEXT,
    target      TEXT,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX queue_waiting ON queue_entries(status, language, priority, entered_at);

-- Callback requests, worked through by operators.
CREATE TABLE callbacks (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    call_id       TEXT NOT NULL REFERENCES calls(call_id) ON DELETE CASCADE,
    caller_hash   TEXT,
    caller_masked TEXT,
    language      TEXT NOT NULL,
    area          TEXT,
    requested_at  BIGINT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'done', 'failed'))
);
CREATE INDEX callbacks_open ON callbacks(status, requested_at);
