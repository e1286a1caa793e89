-- The nodes sharing this database, and which node holds each SIP call.
--
-- A SIP call lives in the memory of the node that answered it (its dialog, its RTP): when that
-- node dies, nobody else can play to the caller or send the BYE. Every node writes `seen_at`
-- (wall-clock Unix ms) about once a second; the nodes that see another one silent for longer than
-- `node_timeout_secs` mark it `dead_at` (one UPDATE: exactly one node wins) and end its live calls
-- in the call log as hung up, so they are neither offered to operators nor left waiting. A node
-- that stops cleanly marks itself dead once its calls are over. `calls.node_id` is NULL for the
-- calls of HTTP carriers, which any node can take.
CREATE TABLE nodes (
    node_id TEXT PRIMARY KEY,
    sip_addr TEXT NOT NULL,
    http_addr TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    seen_at BIGINT NOT NULL,
    dead_at BIGINT
);
CREATE INDEX nodes_alive ON nodes(seen_at) WHERE dead_at IS NULL;
ALTER TABLE calls ADD COLUMN node_id TEXT;
CREATE INDEX calls_node_live ON calls(node_id) WHERE ended_at IS NULL AND node_id IS NOT NULL;
