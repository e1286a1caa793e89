-- The browser phone's media steps of a call (console/src/media/journal.rs): each state of the
-- operator's leg (connecting, connected, reconnecting, ice_restart, failed with its reason,
-- hung_up, ended), for the call's timeline. Written by the node that carries the call's media;
-- purged with the call's detail.
CREATE TABLE call_media (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    call_id     TEXT NOT NULL,
    at          BIGINT NOT NULL,
    operator_id BIGINT,
    state       TEXT NOT NULL,
    reason      TEXT
);
CREATE INDEX call_media_call ON call_media (call_id, at);
