-- A third person on a live call (console/src/operators/mediation.rs): an intercultural mediator
-- (`kind` 'mediator'), or a colleague the operator consults before handing the call over
-- ('consult': the warm transfer). The call's operator invites them (`invited_at`), they join from
-- their own console (`joined_at`) and leave (`left_at`); `holds` once the operator has left the
-- call to them, and they end it.
-- A call's mediations are its detail: retention deletes them with the call.
CREATE TABLE mediations (
    call_id     TEXT NOT NULL REFERENCES calls(call_id) ON DELETE CASCADE,
    mediator_id BIGINT NOT NULL,
    invited_by  BIGINT NOT NULL,
    invited_at  BIGINT NOT NULL,
    joined_at   BIGINT,
    left_at     BIGINT,
    holds       BIGINT NOT NULL DEFAULT 0,
    kind        TEXT NOT NULL DEFAULT 'mediator' CHECK (kind IN ('mediator', 'consult')),
    PRIMARY KEY (call_id, mediator_id)
);
CREATE INDEX mediations_mediator ON mediations (mediator_id);
