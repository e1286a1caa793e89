-- Accounts an admin can run. A disabled user cannot sign in (the row stays: calls, notes and the
-- audit log name them); a password someone else chose (the first admin's, an admin's reset) must
-- be changed by its user at the next sign-in.
ALTER TABLE users ADD COLUMN disabled_at BIGINT;
ALTER TABLE users ADD COLUMN must_change_password BIGINT NOT NULL DEFAULT 0;
