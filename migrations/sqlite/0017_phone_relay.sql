-- The browser phone's signalling between nodes (console/src/media/relay.rs): an operator's page
-- on one node and the call's media on another. Short-lived rows (purged after two minutes): a
-- page's offer, hold or failure for the node that carries the call, that node's answer, and the
-- call's media states for the operator's node. Only PostgreSQL's nodes use it (one SQLite node
-- carries every call's media itself); the table is here so that both schemas stay one.
CREATE TABLE phone_relay (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    origin      TEXT NOT NULL,   -- the node that wrote it (random at each start)
    call_id     TEXT NOT NULL,
    operator_id BIGINT NOT NULL,
    reply_to    BIGINT,          -- an answer: the offer's id
    body        TEXT NOT NULL,   -- JSON, `media::relay::Relayed`
    at          BIGINT NOT NULL
);
CREATE INDEX phone_relay_at ON phone_relay (at);
