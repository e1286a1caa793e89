-- PROVISIONAL (supervisors branch): the operator console's storage as `docs/console-protocol.md`
-- ("Storage (migration 0005)") documents it, so the supervisors' views can be built and tested
-- before console-core's own migration 0005 is merged. It is deleted in favour of console-core's.
ALTER TABLE users ADD COLUMN mediator INTEGER NOT NULL DEFAULT 0;
CREATE TABLE operator_state (
    user_id       BIGINT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    presence      TEXT NOT NULL,
    reason        TEXT,
    since         BIGINT NOT NULL,
    idle_since    BIGINT,
    call_id       TEXT,
    wrap_up_until BIGINT,
    updated_at    BIGINT NOT NULL
);
CREATE TABLE offers (
    id          TEXT PRIMARY KEY,
    call_id     TEXT NOT NULL REFERENCES calls(call_id) ON DELETE CASCADE,
    operator_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    offered_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    status      TEXT NOT NULL,
    match_kind  TEXT NOT NULL,
    resolved_at BIGINT
);
CREATE INDEX offers_call ON offers(call_id);
CREATE TABLE console_messages (
    seq      BIGINT PRIMARY KEY,
    audience TEXT NOT NULL,
    kind     TEXT NOT NULL,
    body     TEXT NOT NULL,
    at       BIGINT NOT NULL
);
ALTER TABLE calls ADD COLUMN operator_id BIGINT;
ALTER TABLE calls ADD COLUMN answered_at BIGINT;
ALTER TABLE calls ADD COLUMN disposition TEXT;
ALTER TABLE calls ADD COLUMN wrap_up_at BIGINT;
CREATE TABLE call_notes (
    call_id     TEXT NOT NULL REFERENCES calls(call_id) ON DELETE CASCADE,
    operator_id BIGINT NOT NULL,
    text        TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (call_id, operator_id)
);
CREATE TABLE referrals (
    call_id      TEXT NOT NULL REFERENCES calls(call_id) ON DELETE CASCADE,
    service_id   TEXT NOT NULL,
    service_name TEXT NOT NULL,
    operator_id  BIGINT NOT NULL,
    at           BIGINT NOT NULL,
    PRIMARY KEY (call_id, service_id)
);
