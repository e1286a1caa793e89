-- Keeping the directory true: two more roles (`editor` reviews every change, `org_editor` edits
-- one organisation's services, `users.organization_id`), the operators' flags, and every version
-- of a service kept (`dir_changes`: proposals, applied edits, restores, imports and exports), with HSDS's
-- `last_modified` and `assured_date` on the services.
ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check
    CHECK (role IN ('operator', 'supervisor', 'admin', 'editor', 'org_editor'));
ALTER TABLE users ADD COLUMN organization_id TEXT;

ALTER TABLE dir_service ADD COLUMN last_modified TEXT;
ALTER TABLE dir_service ADD COLUMN assured_date TEXT;

CREATE TABLE dir_flags (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    service_id  TEXT NOT NULL,
    call_id     TEXT,
    reason      TEXT NOT NULL CHECK (reason IN ('phone_wrong', 'closed', 'moved', 'hours_wrong', 'other')),
    note        TEXT NOT NULL DEFAULT '',
    flagged_by  BIGINT REFERENCES users(id) ON DELETE SET NULL,
    flagged_by_name TEXT NOT NULL,
    flagged_at  BIGINT NOT NULL,
    resolved_by BIGINT REFERENCES users(id) ON DELETE SET NULL,
    resolved_by_name TEXT,
    resolved_at BIGINT
);
CREATE INDEX dir_flags_open ON dir_flags(service_id) WHERE resolved_at IS NULL;

CREATE TABLE dir_changes (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    service_id      TEXT,
    organization_id TEXT,
    kind            TEXT NOT NULL CHECK (kind IN ('edit', 'restore', 'confirm', 'import', 'export')),
    status          TEXT NOT NULL CHECK (status IN ('proposed', 'applied', 'rejected')),
    reason          TEXT NOT NULL DEFAULT '',
    record          TEXT NOT NULL,
    previous        TEXT,
    proposed_by     BIGINT REFERENCES users(id) ON DELETE SET NULL,
    proposed_by_name TEXT NOT NULL,
    proposed_at     BIGINT NOT NULL,
    reviewed_by     BIGINT REFERENCES users(id) ON DELETE SET NULL,
    reviewed_by_name TEXT,
    reviewed_at     BIGINT,
    applied_at      BIGINT
);
CREATE INDEX dir_changes_service ON dir_changes(service_id, id);
CREATE INDEX dir_changes_proposed ON dir_changes(organization_id) WHERE status = 'proposed';
