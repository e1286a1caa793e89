-- Intercultural mediators on live calls (console/src/operators/mediation.rs): the call's operator
-- invites a mediator (`invited_at`), who joins from their own console (`joined_at`) and leaves
-- (`left_at`); `holds` once the operator has left the call to the mediator, who then ends it.
-- A call's mediations are its detail: retention deletes them with the call.
CREATE TABLE mediations (
    call_id     TEXT NOT NULL REFERENCES calls(call_id) ON DELETE CASCADE,
    mediator_id BIGINT NOT NULL,
    invited_by  BIGINT NOT NULL,
    invited_at  BIGINT NOT NULL,
    joined_at   BIGINT,
    left_at     BIGINT,
    holds       BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (call_id, mediator_id)
);
CREATE INDEX mediations_mediator ON mediations (mediator_id);
