-- The retry fingerprints written until now were an unkeyed SHA-256 over the request, which held
-- the caller's raw number: with the masked number beside it (`+39 3** *** **12`, about 10^7
-- candidates) a dump of the database gave every caller's number back. New fingerprints are an
-- HMAC under the server key over the request with the number replaced by its keyed hash
-- (`webhook::fingerprint`). The old ones are erased; a carrier's retry of a request answered
-- before the upgrade still gets its stored answer (`calls::ERASED_FINGERPRINT`). The old row
-- versions stay in the table's files until VACUUM reclaims them (autovacuum, or `VACUUM
-- call_events` at once).
ALTER TABLE call_events DISABLE TRIGGER call_events_append_only;
UPDATE call_events SET fingerprint = 'erased' WHERE fingerprint IS NOT NULL AND fingerprint <> 'ended';
ALTER TABLE call_events ENABLE TRIGGER call_events_append_only;
