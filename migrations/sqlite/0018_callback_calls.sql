-- Callbacks the helpline places itself (console/src/callback/). calling_at / calling_by: a
-- callback being called right now, and by whom: set by the one conditional UPDATE that starts an
-- attempt (two operators clicking "Call back" on one request: one UPDATE changes the row, the
-- other none), cleared when the attempt ends; calling_node: the node running it (a node that
-- dies mid-attempt leaves the request free again, `nodes`). call_state: what the page shows
-- meanwhile ('dialing', 'ringing', 'talking').
ALTER TABLE callbacks ADD COLUMN calling_at BIGINT;
ALTER TABLE callbacks ADD COLUMN calling_by INTEGER REFERENCES users(id) ON DELETE SET NULL;
ALTER TABLE callbacks ADD COLUMN call_state TEXT;
ALTER TABLE callbacks ADD COLUMN calling_node TEXT;

-- Every attempt, for the call's timeline: who called, when, how it ended ('reached', 'busy',
-- 'no_answer', 'refused', 'unavailable', 'auth_failed', 'unreachable', 'dropped',
-- 'operator_left', 'undecryptable', …) with the trunk's status code when it gave one.
CREATE TABLE callback_attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    callback_id INTEGER NOT NULL REFERENCES callbacks(id) ON DELETE CASCADE,
    call_id     TEXT NOT NULL REFERENCES calls(call_id) ON DELETE CASCADE,
    operator_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
    started_at  BIGINT NOT NULL,
    ended_at    BIGINT,
    result      TEXT,
    sip_status  INTEGER
);
CREATE INDEX callback_attempts_call ON callback_attempts(call_id, started_at);

-- Callbacks that reached the caller and those closed as unreachable, per hour × language × area
-- of when they did (console::supervisor::store::add_callback_outcome): added straight into the
-- roll-up, since they come after their call (often after it is settled).
ALTER TABLE kpi_hourly ADD COLUMN callbacks_reached BIGINT NOT NULL DEFAULT 0;
ALTER TABLE kpi_hourly ADD COLUMN callbacks_unreachable BIGINT NOT NULL DEFAULT 0;
