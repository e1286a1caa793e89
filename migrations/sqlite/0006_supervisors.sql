-- Supervisors (issue 8): indexes for the call log's keyset pages, the audit log, and the hourly
-- KPI aggregates that outlive the retention purge of per-call detail.

-- Newest first, ties broken by call id: the keyset the log pages on. One index per filter column
-- with the keyset after it, so a filtered page reads only its own rows.
CREATE INDEX calls_log ON calls(started_at, call_id);
CREATE INDEX calls_log_language ON calls(language, started_at, call_id);
CREATE INDEX calls_log_area ON calls(area, started_at, call_id);
CREATE INDEX calls_log_outcome ON calls(outcome, started_at, call_id);
CREATE INDEX calls_log_operator ON calls(operator_id, started_at, call_id);
CREATE INDEX calls_log_disposition ON calls(disposition, started_at, call_id);
CREATE INDEX calls_log_town ON calls(town, started_at, call_id);
CREATE INDEX calls_log_channel ON calls(channel, started_at, call_id);
-- The wallboard's calls in progress.
CREATE INDEX calls_open ON calls(ended_at) WHERE ended_at IS NULL;

-- Who opened which call record, who purged what. Append-only.
CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        BIGINT NOT NULL,
    user_id   BIGINT,
    user_name TEXT NOT NULL,
    action    TEXT NOT NULL,
    call_id   TEXT,
    detail    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at ON audit_log(at);
CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

-- The KPI counts of one UTC hour (Europe/Rome's offsets are whole hours, so each lies in one Rome
-- hour and day) × language × area, rolled up from the calls before they are purged. Additive, so
-- any grouping by day, hour, language or area is a sum. '' stands for "none" (hung up before
-- choosing).
CREATE TABLE kpi_hourly (
    hour_utc            BIGINT NOT NULL,
    day                 TEXT NOT NULL,
    language            TEXT NOT NULL,
    area                TEXT NOT NULL,
    calls               BIGINT NOT NULL,
    self_service        BIGINT NOT NULL,
    queued              BIGINT NOT NULL,
    answered            BIGINT NOT NULL,
    answered_in_sl      BIGINT NOT NULL,
    abandoned           BIGINT NOT NULL,
    abandoned_short     BIGINT NOT NULL,
    wait_answered_ms    BIGINT NOT NULL,
    wait_abandoned_ms   BIGINT NOT NULL,
    max_wait_ms         BIGINT NOT NULL,
    talk_ms             BIGINT NOT NULL,
    callback            BIGINT NOT NULL,
    out_of_hours        BIGINT NOT NULL,
    hung_up_in_menu     BIGINT NOT NULL,
    menu_ms             BIGINT NOT NULL,
    PRIMARY KEY (hour_utc, language, area)
);
CREATE INDEX kpi_hourly_day ON kpi_hourly(day);
