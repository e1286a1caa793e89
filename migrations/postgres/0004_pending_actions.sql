-- Actions decided by the server itself (an operator took the call) for a carrier that is not
-- waiting on a request: delivered, in order, with the answer to the call's next request.
ALTER TABLE calls ADD COLUMN pending_actions TEXT;
