-- The text messages sent to callers (console/src/texts): the services read back (the caller
-- pressed the readback's key) or referred by an operator. Never the text, never the number: that
-- one was sent, how (trunk or twilio), its segments and alphabet, and its delivery result — the
-- trunk's answer, or the carrier's status callback (matched by the message's sid). Purged with
-- the call's detail.
CREATE TABLE text_messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id     TEXT NOT NULL,
    via         TEXT NOT NULL CHECK (via IN ('trunk', 'twilio')),
    segments    INTEGER NOT NULL,
    encoding    TEXT NOT NULL CHECK (encoding IN ('gsm7', 'ucs2')),
    -- sent (the trunk or carrier took it), failed, or the carrier's later status (delivered, undelivered, ...).
    status      TEXT NOT NULL,
    -- The trunk's status code and phrase, or the carrier's error; why it failed.
    detail      TEXT,
    carrier_sid TEXT,
    -- The operator who sent it from the console (users.id); NULL: the caller asked in the menu.
    sent_by     BIGINT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX text_messages_call ON text_messages (call_id);
CREATE INDEX text_messages_sid ON text_messages (carrier_sid);
