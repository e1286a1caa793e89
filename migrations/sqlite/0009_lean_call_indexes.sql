-- The write path's pages, third step (issue 4): fewer index entries per call.
--
-- Two indexes repeat the leading columns of the supervisors' keyset indexes (0006), which serve
-- every query they served: `calls_started` (started_at) is a prefix of `calls_log` (started_at,
-- call_id), and `calls_operator` (operator_id, started_at) of `calls_log_operator`.
DROP INDEX calls_started;
DROP INDEX calls_operator;

-- The filter indexes of the call log hold only the calls that have the value. A new call has no
-- language, area, town, outcome, operator or disposition yet: it no longer writes an entry with a
-- NULL key into each of six indexes, nor moves it when the value is set. The log's filters are
-- all `column = value`, which implies `column IS NOT NULL`: both SQLite and PostgreSQL use a
-- partial index for them.
DROP INDEX calls_log_language;
DROP INDEX calls_log_area;
DROP INDEX calls_log_outcome;
DROP INDEX calls_log_operator;
DROP INDEX calls_log_disposition;
DROP INDEX calls_log_town;
CREATE INDEX calls_log_language ON calls(language, started_at, call_id) WHERE language IS NOT NULL;
CREATE INDEX calls_log_area ON calls(area, started_at, call_id) WHERE area IS NOT NULL;
CREATE INDEX calls_log_outcome ON calls(outcome, started_at, call_id) WHERE outcome IS NOT NULL;
CREATE INDEX calls_log_operator ON calls(operator_id, started_at, call_id) WHERE operator_id IS NOT NULL;
CREATE INDEX calls_log_disposition ON calls(disposition, started_at, call_id) WHERE disposition IS NOT NULL;
CREATE INDEX calls_log_town ON calls(town, started_at, call_id) WHERE town IS NOT NULL;
