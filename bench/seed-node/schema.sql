-- The seed's tables for the side-by-side benchmark (bench/seed_compare.rs), and its
-- setupRLS (Step 1 of the sketch) for the one table the compared endpoints read, made to
-- run: PostgreSQL has no CREATE POLICY IF NOT EXISTS, so the policies are plain CREATE
-- POLICY on a fresh database. Flaws kept: one-argument current_setting(...)::uuid,
-- policies for PUBLIC, a single-column tenant index.
CREATE TABLE tenants (id uuid PRIMARY KEY, name text NOT NULL);
CREATE TABLE projects (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  name text NOT NULL,
  description text,
  created_at timestamptz NOT NULL DEFAULT now()
);
DO $$ BEGIN
IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_user') THEN
CREATE ROLE app_user LOGIN PASSWORD 'secure-password';
END IF;
END $$;
ALTER TABLE projects ADD COLUMN IF NOT EXISTS tenant_id UUID NOT NULL;
CREATE INDEX IF NOT EXISTS idx_projects_tenant ON projects (tenant_id);
ALTER TABLE projects ENABLE ROW LEVEL SECURITY;
ALTER TABLE projects FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_select_projects ON projects FOR SELECT
  USING (tenant_id = current_setting('app.current_tenant_id')::uuid);
CREATE POLICY tenant_insert_projects ON projects FOR INSERT
  WITH CHECK (tenant_id = current_setting('app.current_tenant_id')::uuid);
CREATE POLICY tenant_update_projects ON projects FOR UPDATE
  USING (tenant_id = current_setting('app.current_tenant_id')::uuid)
  WITH CHECK (tenant_id = current_setting('app.current_tenant_id')::uuid);
CREATE POLICY tenant_delete_projects ON projects FOR DELETE
  USING (tenant_id = current_setting('app.current_tenant_id')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON projects TO app_user;
