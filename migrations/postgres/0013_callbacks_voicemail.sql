-- Callbacks the helpline places itself. number_sealed: the caller's number, AES-256-GCM under a
-- key derived from the server secret with the call id as associated data (console::calls::sealed),
-- kept only with a callback request and set to NULL when the callback is done or given up.
-- attempts / last_result: the callback attempts made so far and how the last one ended; after
-- callback_max_attempts the request is closed with status 'failed' (unreachable).
ALTER TABLE callbacks ADD COLUMN number_sealed TEXT;
ALTER TABLE callbacks ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE callbacks ADD COLUMN last_attempt_at BIGINT;
ALTER TABLE callbacks ADD COLUMN last_result TEXT;

-- A caller's voice message: an 8 kHz 16-bit mono WAV, silence trimmed at both ends, in the
-- database so that every node can play it. One per call; it goes with its call (retention).
CREATE TABLE voicemails (
    call_id     TEXT PRIMARY KEY REFERENCES calls(call_id) ON DELETE CASCADE,
    recorded_at BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    audio       BYTEA NOT NULL
);
