-- Idempotency keys: the first final answer (2xx or 4xx) to a POST or PATCH that carried an
-- `Idempotency-Key` header, per tenant and credential, written in the same transaction as
-- the request's own writes, so a retry after a lost reply returns it instead of writing
-- again. No triggers (this must carry over to Citus, where the table is distributed by
-- tenant_id like every other tenant table): the API server writes and cleans up the rows.
CREATE TABLE idempotency_keys (
    tenant_id     uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id            uuid        NOT NULL DEFAULT tenantguard.uuid_v7(),
    -- The credential the request came with: `api_key:<id>` or `user:<sub>`.
    credential    text        NOT NULL CHECK (length(credential) BETWEEN 1 AND 300),
    idem_key      text        NOT NULL CHECK (length(idem_key) BETWEEN 1 AND 255),
    -- sha256 of method, path and body: the same key with another request is a 422.
    request_hash  bytea       NOT NULL CHECK (length(request_hash) = 32),
    -- The server records only 2xx and 4xx answers; the check is kept loose so that
    -- `tenantguard probe` can synthesize rows for its attacks.
    status        smallint    NOT NULL CHECK (status BETWEEN 0 AND 599),
    content_type  text,
    body          bytea       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT idempotency_keys_key UNIQUE (tenant_id, credential, idem_key)
);
-- Expired rows are deleted per tenant (see src/http/idempotency.rs).
CREATE INDEX idempotency_keys_tenant_expires_idx ON idempotency_keys (tenant_id, expires_at);
