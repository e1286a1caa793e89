-- Recording with consent (console/src/operators/recording.rs). The caller may refuse at the
-- recording notice (the engine's call state, `recording_refused`) or tell the operator, who marks
-- the spoken refusal here. A call's refusal and recordings are its detail: retention deletes them
-- with the call.
CREATE TABLE recording_refusals (
    call_id     TEXT PRIMARY KEY REFERENCES calls(call_id) ON DELETE CASCADE,
    refused_at  BIGINT NOT NULL,
    operator_id BIGINT NOT NULL
);

-- The call's mixed audio (caller, operator, mediator) from a start to its stop, as an 8 kHz
-- 16-bit mono WAV, in the database so that every node plays it. `ended_at` and `audio` are set
-- when it stops (or the call ends while recording); supervisors play it (audited).
CREATE TABLE recordings (
    id          TEXT PRIMARY KEY,
    call_id     TEXT NOT NULL REFERENCES calls(call_id) ON DELETE CASCADE,
    started_at  BIGINT NOT NULL,
    started_by  BIGINT NOT NULL,
    ended_at    BIGINT,
    duration_ms BIGINT,
    audio       BYTEA
);
CREATE INDEX recordings_call ON recordings (call_id, started_at);
