-- The operator console (issue 7): presence, offers, durable console messages, notes, referrals.
-- See docs/console-protocol.md.

-- Trained for intercultural mediation (the ACD's fallback).
ALTER TABLE users ADD COLUMN mediator BIGINT NOT NULL DEFAULT 0;

-- Who took the call, when the talk started, how it was closed.
ALTER TABLE calls ADD COLUMN operator_id BIGINT REFERENCES users(id) ON DELETE SET NULL;
ALTER TABLE calls ADD COLUMN answered_at BIGINT;
ALTER TABLE calls ADD COLUMN disposition TEXT;
ALTER TABLE calls ADD COLUMN wrap_up_at BIGINT;
CREATE INDEX calls_operator ON calls(operator_id, started_at);

-- Callbacks worked through by operators.
ALTER TABLE callbacks ADD COLUMN claimed_by BIGINT REFERENCES users(id) ON DELETE SET NULL;
ALTER TABLE callbacks ADD COLUMN claimed_at BIGINT;
ALTER TABLE callbacks ADD COLUMN done_at BIGINT;

-- Each operator's presence. seen_at: the last time a node saw one of their sockets open.
CREATE TABLE operator_state (
    user_id       BIGINT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    presence      TEXT NOT NULL CHECK (presence IN ('available', 'offered', 'on_call', 'wrap_up', 'paused', 'offline')),
    reason        TEXT,
    since         BIGINT NOT NULL,
    idle_since    BIGINT NOT NULL,
    call_id       TEXT,
    wrap_up_until BIGINT,
    seen_at       BIGINT NOT NULL DEFAULT 0,
    updated_at    BIGINT NOT NULL
);

-- Calls offered to operators. At most one open offer per call (the partial unique index): two
-- nodes cannot offer the same call twice.
CREATE TABLE offers (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    call_id     TEXT NOT NULL REFERENCES calls(call_id) ON DELETE CASCADE,
    operator_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    offered_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('open', 'accepted', 'expired', 'declined', 'withdrawn')),
    match_kind  TEXT NOT NULL CHECK (match_kind IN ('full', 'language', 'fallback')),
    resolved_at BIGINT
);
CREATE UNIQUE INDEX offers_one_open ON offers(call_id) WHERE status = 'open';
CREATE INDEX offers_call ON offers(call_id, status);

-- Every server→page message with a seq, stored before it is sent (replayed on reconnect).
-- audience: comma-separated list of `all`, `user:<id>`, `role:supervisor`.
CREATE TABLE console_messages (
    seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    audience TEXT NOT NULL,
    kind     TEXT NOT NULL,
    body     TEXT NOT NULL,
    at       BIGINT NOT NULL
);
CREATE INDEX console_messages_at ON console_messages(at);

CREATE TABLE call_notes (
    call_id     TEXT NOT NULL REFERENCES calls(call_id) ON DELETE CASCADE,
    operator_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    text        TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (call_id, operator_id)
);

CREATE TABLE referrals (
    call_id      TEXT NOT NULL REFERENCES calls(call_id) ON DELETE CASCADE,
    service_id   TEXT NOT NULL,
    service_name TEXT NOT NULL,
    operator_id  BIGINT REFERENCES users(id) ON DELETE SET NULL,
    at           BIGINT NOT NULL,
    PRIMARY KEY (call_id, service_id)
);

-- One row every transaction that writes console messages updates first: it serialises those
-- transactions (on both backends), so seq order is commit order and a reader that saw seq N has
-- seen every message before it.
CREATE TABLE console_lock (
    id INTEGER PRIMARY KEY,
    n  BIGINT NOT NULL
);
INSERT INTO console_lock (id, n) VALUES (1, 0);
