-- The KPIs of settled calls are kept in `kpi_hourly`, not aggregated again on every request.
--
-- A call is settled once it has ended and its KPI facts can no longer change (`serve` settles in
-- the background, 500 calls per transaction: `supervisor/settle.rs`): its counts are added to
-- `kpi_hourly` (the roll-up the retention purge already keeps) and `kpi_settled` is set, in one
-- transaction. The KPIs of any period are then the roll-up's rows plus the live counts of the
-- calls not settled yet, which the partial index below finds without touching the others: a
-- year's KPIs read a few thousand roll-up rows and the recent calls instead of every call.
ALTER TABLE calls ADD COLUMN kpi_settled INTEGER NOT NULL DEFAULT 0;
CREATE INDEX calls_kpi_unsettled ON calls(started_at) WHERE kpi_settled = 0;
