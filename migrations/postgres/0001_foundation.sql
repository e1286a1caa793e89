-- Foundation tables: the server's own settings, users and their sessions, calls and their
-- append-only call log. Timestamps are Unix epoch milliseconds (BIGINT) on both backends.

CREATE TABLE server_settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL CHECK (role IN ('operator', 'supervisor', 'admin')),
    languages     TEXT NOT NULL DEFAULT '',
    areas         TEXT NOT NULL DEFAULT '',
    password_hash TEXT NOT NULL,
    sip_target    TEXT,
    created_at    BIGINT NOT NULL
);

CREATE TABLE sessions (
    token_hash   TEXT PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_token   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE calls (
    call_id       TEXT PRIMARY KEY,
    channel       TEXT NOT NULL,
    started_at    BIGINT NOT NULL,
    ended_at      BIGINT,
    caller_hash   TEXT,
    caller_masked TEXT,
    language      TEXT,
    language_guessed INTEGER NOT NULL DEFAULT 0,
    area          TEXT,
    cap           TEXT,
    outcome       TEXT,
    last_seq      BIGINT NOT NULL DEFAULT 0,
    state         TEXT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX calls_started ON calls(started_at);
CREATE INDEX calls_caller ON calls(caller_hash);

CREATE TABLE call_events (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    call_id  TEXT NOT NULL REFERENCES calls(call_id) ON DELETE CASCADE,
    seq      BIGINT NOT NULL,
    at       BIGINT NOT NULL,
    kind     TEXT NOT NULL,
    data     TEXT NOT NULL,
    UNIQUE (call_id, seq)
);

-- The call log is append-only: an event, once written, is never rewritten.
CREATE FUNCTION call_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'call_events is append-only';
END;
$$;
CREATE TRIGGER call_events_append_only BEFORE UPDATE ON call_events
    FOR EACH ROW EXECUTE FUNCTION call_events_append_only();
