-- tenantguard reference schema (forward-only; never edit an applied migration).
--
-- Rules for every tenant table (checked by `tenantguard audit`):
--   * tenant_id uuid NOT NULL leads the primary key (tenant_id, id) and every index;
--   * every unique constraint includes tenant_id (no cross-tenant existence oracle);
--   * every foreign key between tenant tables is composite (tenant_id, x_id), because
--     FK checks bypass RLS;
--   * ids are UUIDv7 (time-ordered, so new rows append to the index).
-- RLS, policies, the tenant_id default and grants are applied by the policy engine
-- (src/policy), not here, so that role and setting names stay configurable.

CREATE FUNCTION tenantguard.uuid_v7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE
AS $$
  -- 48-bit Unix milliseconds, then random bits from a v4 UUID with the version set to 7.
  SELECT encode(
    set_bit(set_bit(
      overlay(uuid_send(gen_random_uuid())
              PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
              FROM 1 FOR 6),
      52, 1), 53, 1),
    'hex')::uuid
$$;

CREATE TABLE tenants (
    id          uuid        NOT NULL DEFAULT tenantguard.uuid_v7() PRIMARY KEY,
    name        text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE team_members (
    tenant_id   uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id          uuid        NOT NULL DEFAULT tenantguard.uuid_v7(),
    email       text        NOT NULL CHECK (email = lower(email) AND email LIKE '%_@_%' AND length(email) <= 320),
    name        text        NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    role        text        NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT team_members_email_key UNIQUE (tenant_id, email)
);

CREATE TABLE projects (
    tenant_id   uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id          uuid        NOT NULL DEFAULT tenantguard.uuid_v7(),
    name        text        NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    description text        CHECK (length(description) <= 10000),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX projects_tenant_created_idx ON projects (tenant_id, created_at DESC, id DESC);

CREATE TABLE tasks (
    tenant_id   uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id          uuid        NOT NULL DEFAULT tenantguard.uuid_v7(),
    project_id  uuid        NOT NULL,
    title       text        NOT NULL CHECK (length(title) BETWEEN 1 AND 500),
    description text        CHECK (length(description) <= 10000),
    status      text        NOT NULL DEFAULT 'todo' CHECK (status IN ('todo', 'in_progress', 'done', 'cancelled')),
    assignee_id uuid,
    due_date    date,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT tasks_project_fkey FOREIGN KEY (tenant_id, project_id)
        REFERENCES projects (tenant_id, id) ON DELETE CASCADE,
    -- PostgreSQL 15's column list: nulling tenant_id too would violate NOT NULL.
    CONSTRAINT tasks_assignee_fkey FOREIGN KEY (tenant_id, assignee_id)
        REFERENCES team_members (tenant_id, id) ON DELETE SET NULL (assignee_id)
);
CREATE INDEX tasks_tenant_project_idx ON tasks (tenant_id, project_id, created_at DESC, id DESC);
CREATE INDEX tasks_tenant_assignee_idx ON tasks (tenant_id, assignee_id);
CREATE INDEX tasks_tenant_created_idx ON tasks (tenant_id, created_at DESC, id DESC);

CREATE TABLE documents (
    tenant_id   uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id          uuid        NOT NULL DEFAULT tenantguard.uuid_v7(),
    project_id  uuid        NOT NULL,
    title       text        NOT NULL CHECK (length(title) BETWEEN 1 AND 500),
    body        text        NOT NULL DEFAULT '' CHECK (length(body) <= 1000000),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT documents_project_fkey FOREIGN KEY (tenant_id, project_id)
        REFERENCES projects (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX documents_tenant_project_idx ON documents (tenant_id, project_id, created_at DESC, id DESC);

CREATE TABLE comments (
    tenant_id   uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id          uuid        NOT NULL DEFAULT tenantguard.uuid_v7(),
    task_id     uuid,
    document_id uuid,
    author_id   uuid,
    body        text        NOT NULL CHECK (length(body) BETWEEN 1 AND 20000),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT comments_one_parent CHECK (num_nonnulls(task_id, document_id) = 1),
    CONSTRAINT comments_task_fkey FOREIGN KEY (tenant_id, task_id)
        REFERENCES tasks (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT comments_document_fkey FOREIGN KEY (tenant_id, document_id)
        REFERENCES documents (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT comments_author_fkey FOREIGN KEY (tenant_id, author_id)
        REFERENCES team_members (tenant_id, id) ON DELETE SET NULL (author_id)
);
CREATE INDEX comments_tenant_task_idx ON comments (tenant_id, task_id, created_at, id);
CREATE INDEX comments_tenant_document_idx ON comments (tenant_id, document_id, created_at, id);
CREATE INDEX comments_tenant_author_idx ON comments (tenant_id, author_id);

CREATE TABLE invoices (
    tenant_id     uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id            uuid        NOT NULL DEFAULT tenantguard.uuid_v7(),
    number        text        NOT NULL CHECK (length(number) BETWEEN 1 AND 64),
    customer_name text        NOT NULL CHECK (length(customer_name) BETWEEN 1 AND 255),
    amount_minor  bigint      NOT NULL CHECK (amount_minor >= 0),
    currency      text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status        text        NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'issued', 'paid', 'void')),
    issued_on     date,
    due_on        date,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT invoices_number_key UNIQUE (tenant_id, number),
    CONSTRAINT invoices_dates CHECK (due_on IS NULL OR issued_on IS NULL OR due_on >= issued_on)
);
CREATE INDEX invoices_tenant_created_idx ON invoices (tenant_id, created_at DESC, id DESC);

CREATE TABLE api_keys (
    tenant_id    uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id           uuid        NOT NULL DEFAULT tenantguard.uuid_v7(),
    name         text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    prefix       text        NOT NULL CHECK (length(prefix) BETWEEN 4 AND 32),
    key_hash     bytea       NOT NULL CHECK (length(key_hash) = 32),
    role         text        NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz,
    PRIMARY KEY (tenant_id, id),
    -- Keys carry their tenant id, so lookups are (tenant_id, key_hash): inside one tenant.
    CONSTRAINT api_keys_hash_key UNIQUE (tenant_id, key_hash)
);

CREATE TABLE webhooks (
    tenant_id      uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id             uuid        NOT NULL DEFAULT tenantguard.uuid_v7(),
    url            text        NOT NULL CHECK (url ~ '^https?://' AND length(url) <= 2048),
    event_types    text[]      NOT NULL CHECK (cardinality(event_types) BETWEEN 1 AND 64),
    signing_secret text        NOT NULL CHECK (length(signing_secret) >= 16),
    active         boolean     NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE audit_log (
    tenant_id     uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id            uuid        NOT NULL DEFAULT tenantguard.uuid_v7(),
    actor         text        NOT NULL,
    action        text        NOT NULL,
    resource_type text        NOT NULL,
    resource_id   uuid,
    occurred_at   timestamptz NOT NULL DEFAULT now(),
    details       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX audit_log_tenant_time_idx ON audit_log (tenant_id, occurred_at DESC, id DESC);
