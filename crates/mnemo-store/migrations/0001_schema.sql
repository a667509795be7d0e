-- Mnemo schema: the seed's 13 tables (projects → tenants → memories, offloaded contexts, federated
-- learning, policies, audit, metrics), made Citus-ready and isolated by Row Level Security.
--
-- Citus layout: `projects`, `tenants`, `api_keys`, `federated_sessions` and `aggregated_insights` are
-- control-plane (reference) tables; every other table is tenant-owned, distributed by `tenant_id`, and
-- every primary key, unique constraint and foreign key on it includes `tenant_id`.

CREATE EXTENSION IF NOT EXISTS vector;

CREATE TYPE isolation_level AS ENUM ('strict', 'shared', 'federated');
CREATE TYPE privacy_level AS ENUM ('basic', 'differential', 'secure');
CREATE TYPE session_status AS ENUM ('forming', 'active', 'aggregating', 'completed', 'failed');
CREATE TYPE aggregation_method AS ENUM ('weighted', 'consensus', 'hybrid');
CREATE TYPE archival_policy AS ENUM ('delete', 'archive', 'retain');

-- The role tenant requests run as (`SET LOCAL ROLE mnemo_app`): not the owner of any table and without
-- BYPASSRLS, so Row Level Security applies to every statement it runs. Roles are cluster-wide, hence the
-- guard: several databases of one cluster (tests, staging) share it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mnemo_app') THEN
        CREATE ROLE mnemo_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
    IF NOT pg_has_role(current_user, 'mnemo_app', 'MEMBER') THEN
        EXECUTE format('GRANT mnemo_app TO %I', current_user);
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL; -- another database of this cluster created it at the same moment
END
$$;

-- The tenant of the current transaction, set by the service with `SET LOCAL app.tenant_id`.
-- NULL when unset: then every tenant policy is false and tenant tables show nothing.
CREATE FUNCTION mnemo_current_tenant() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid $$;

CREATE FUNCTION mnemo_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Control plane
-- ---------------------------------------------------------------------------------------------

CREATE TABLE projects (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    description text CHECK (length(description) <= 10000),
    owner_id    text NOT NULL CHECK (length(btrim(owner_id)) BETWEEN 1 AND 200),
    settings    jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(settings) = 'object'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX projects_owner_idx ON projects (owner_id);

CREATE TABLE tenants (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id          text NOT NULL UNIQUE CHECK (tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$'),
    project_id         uuid NOT NULL REFERENCES projects (id) ON DELETE RESTRICT,
    name               text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    isolation_level    isolation_level NOT NULL DEFAULT 'strict',
    encryption_enabled boolean NOT NULL DEFAULT false,
    max_memories       bigint CHECK (max_memories > 0),
    max_storage_bytes  bigint CHECK (max_storage_bytes > 0),
    settings           jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(settings) = 'object'),
    is_active          boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tenants_project_idx ON tenants (project_id);

-- API keys: only a SHA-256 of the secret is kept. Looked up by hash before the tenant is known, so this
-- is a control-plane table the application role cannot read.
CREATE TABLE api_keys (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    prefix       text NOT NULL,
    key_hash     bytea NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
    scopes       text[] NOT NULL CHECK (cardinality(scopes) >= 1),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id, created_at);

-- Service-wide settings (the admin key hash lives here).
CREATE TABLE mnemo_settings (
    key        text PRIMARY KEY,
    value      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------------------------
-- Tenant-owned tables
-- ---------------------------------------------------------------------------------------------

CREATE TABLE tenant_access_policies (
    id               uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id        uuid NOT NULL DEFAULT mnemo_current_tenant() REFERENCES tenants (id) ON DELETE CASCADE,
    name             text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    resource_type    text NOT NULL CHECK (resource_type IN ('memories', 'relationships', 'contexts', 'federated', 'audit', 'usage', 'policies')),
    resource_pattern text NOT NULL DEFAULT '*' CHECK (length(resource_pattern) BETWEEN 1 AND 255),
    permissions      text[] NOT NULL CHECK (permissions <@ ARRAY['read', 'write', 'delete']::text[]),
    api_key_id       uuid,
    conditions       jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(conditions) = 'object'),
    is_active        boolean NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);
CREATE INDEX tenant_access_policies_lookup_idx ON tenant_access_policies (tenant_id, resource_type) WHERE is_active;

CREATE TABLE tenant_sharing_rules (
    id               uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id        uuid NOT NULL DEFAULT mnemo_current_tenant() REFERENCES tenants (id) ON DELETE CASCADE,
    target_tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    resource_type    text NOT NULL CHECK (resource_type IN ('memories', 'contexts', 'insights')),
    permissions      text[] NOT NULL DEFAULT ARRAY['read'] CHECK (permissions <@ ARRAY['read', 'write']::text[] AND cardinality(permissions) >= 1),
    conditions       jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(conditions) = 'object'),
    is_active        boolean NOT NULL DEFAULT true,
    expires_at       timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, target_tenant_id, resource_type),
    CHECK (target_tenant_id <> tenant_id)
);
CREATE INDEX tenant_sharing_rules_target_idx ON tenant_sharing_rules (target_tenant_id);

CREATE TABLE data_retention_policies (
    id              uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id       uuid NOT NULL DEFAULT mnemo_current_tenant() REFERENCES tenants (id) ON DELETE CASCADE,
    resource_type   text NOT NULL CHECK (resource_type IN ('memories', 'contexts', 'audit_log')),
    retention_days  integer CHECK (retention_days > 0),
    archival_policy archival_policy NOT NULL DEFAULT 'delete',
    is_active       boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, resource_type)
);

CREATE TABLE contextual_memories (
    id               uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id        uuid NOT NULL DEFAULT mnemo_current_tenant() REFERENCES tenants (id) ON DELETE CASCADE,
    memory_id        text NOT NULL CHECK (length(memory_id) BETWEEN 1 AND 255),
    relevance_score  double precision NOT NULL DEFAULT 0.5 CHECK (relevance_score BETWEEN 0 AND 1),
    content          jsonb NOT NULL,
    tags             text[] NOT NULL DEFAULT '{}',
    metadata         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    embedding        vector(384),
    embedding_model  text,
    search_tsv       tsvector GENERATED ALWAYS AS (jsonb_to_tsvector('english'::regconfig, content, '["string"]'::jsonb)) STORED,
    content_bytes    integer GENERATED ALWAYS AS (octet_length(content::text)) STORED,
    access_count     bigint NOT NULL DEFAULT 0,
    last_accessed_at timestamptz,
    expires_at       timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT contextual_memories_tenant_memory_key UNIQUE (tenant_id, memory_id)
);
CREATE INDEX contextual_memories_recent_idx ON contextual_memories (tenant_id, created_at DESC, id DESC);
CREATE INDEX contextual_memories_relevance_idx ON contextual_memories (tenant_id, relevance_score DESC);
CREATE INDEX contextual_memories_expiry_idx ON contextual_memories (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX contextual_memories_content_idx ON contextual_memories USING gin (content jsonb_path_ops);
CREATE INDEX contextual_memories_tags_idx ON contextual_memories USING gin (tags);
CREATE INDEX contextual_memories_fts_idx ON contextual_memories USING gin (search_tsv);
-- Vector search over memories is exact (B-tree on tenant_id, distance sort) for small tenants and uses a
-- per-tenant partial HNSW index for large ones (created by the service); a single global ANN index with a
-- tenant filter loses recall for small tenants.

CREATE TABLE contextual_memories_archive (
    id              uuid NOT NULL,
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    memory_id       text NOT NULL,
    relevance_score double precision NOT NULL,
    content         jsonb NOT NULL,
    tags            text[] NOT NULL,
    metadata        jsonb NOT NULL,
    embedding       vector(384),
    embedding_model text,
    expires_at      timestamptz,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    archived_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX contextual_memories_archive_memory_idx ON contextual_memories_archive (tenant_id, memory_id);

CREATE TABLE memory_relationships (
    id                uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id         uuid NOT NULL DEFAULT mnemo_current_tenant() REFERENCES tenants (id) ON DELETE CASCADE,
    source_memory_id  uuid NOT NULL,
    target_memory_id  uuid NOT NULL,
    relationship_type text NOT NULL CHECK (relationship_type ~ '^[A-Za-z][A-Za-z0-9_.:-]{0,63}$'),
    weight            double precision NOT NULL DEFAULT 1.0 CHECK (weight BETWEEN 0 AND 1),
    metadata          jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, source_memory_id, target_memory_id, relationship_type),
    FOREIGN KEY (tenant_id, source_memory_id) REFERENCES contextual_memories (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, target_memory_id) REFERENCES contextual_memories (tenant_id, id) ON DELETE CASCADE,
    CHECK (source_memory_id <> target_memory_id)
);
CREATE INDEX memory_relationships_target_idx ON memory_relationships (tenant_id, target_memory_id);

CREATE TABLE offloaded_contexts (
    id                     uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id              uuid NOT NULL DEFAULT mnemo_current_tenant() REFERENCES tenants (id) ON DELETE CASCADE,
    context_id             text NOT NULL CHECK (length(context_id) BETWEEN 1 AND 255),
    memory_id              text CHECK (length(memory_id) BETWEEN 1 AND 255),
    session_id             text,
    relevance_score        double precision NOT NULL DEFAULT 0.5 CHECK (relevance_score BETWEEN 0 AND 1),
    summary                text,
    compressed_content     bytea,
    compression_method     text NOT NULL DEFAULT 'none',
    original_token_count   integer CHECK (original_token_count >= 0),
    compressed_token_count integer CHECK (compressed_token_count >= 0),
    original_size_bytes    bigint CHECK (original_size_bytes >= 0),
    compressed_size_bytes  bigint CHECK (compressed_size_bytes >= 0),
    compression_ratio      double precision NOT NULL DEFAULT 1.0 CHECK (compression_ratio > 0),
    embedding              vector(384),
    metadata               jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    access_count           bigint NOT NULL DEFAULT 0,
    last_accessed_at       timestamptz,
    expires_at             timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, context_id)
);
CREATE INDEX offloaded_contexts_recent_idx ON offloaded_contexts (tenant_id, created_at DESC);
CREATE INDEX offloaded_contexts_session_idx ON offloaded_contexts (tenant_id, session_id);
CREATE INDEX offloaded_contexts_expiry_idx ON offloaded_contexts (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX offloaded_contexts_embedding_idx ON offloaded_contexts USING hnsw (embedding vector_cosine_ops);

CREATE TABLE federated_participants (
    id                  uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL DEFAULT mnemo_current_tenant() REFERENCES tenants (id) ON DELETE CASCADE,
    privacy_level       privacy_level NOT NULL DEFAULT 'differential',
    reputation_score    double precision NOT NULL DEFAULT 0.5 CHECK (reputation_score BETWEEN 0 AND 1),
    contributions_count integer NOT NULL DEFAULT 0 CHECK (contributions_count >= 0),
    privacy_budget_used double precision NOT NULL DEFAULT 0 CHECK (privacy_budget_used >= 0),
    is_active           boolean NOT NULL DEFAULT true,
    joined_at           timestamptz NOT NULL DEFAULT now(),
    last_active_at      timestamptz,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id)
);

-- Federated sessions span tenants of a project: control-plane (reference) tables.
CREATE TABLE federated_sessions (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id          text NOT NULL UNIQUE CHECK (length(session_id) BETWEEN 1 AND 255),
    topic               text NOT NULL CHECK (length(btrim(topic)) BETWEEN 1 AND 500),
    description         text,
    status              session_status NOT NULL DEFAULT 'forming',
    initiator_tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    aggregation_method  aggregation_method NOT NULL DEFAULT 'weighted',
    privacy_level       privacy_level NOT NULL DEFAULT 'differential',
    min_participants    integer NOT NULL DEFAULT 2 CHECK (min_participants >= 1),
    max_participants    integer CHECK (max_participants IS NULL OR max_participants >= min_participants),
    privacy_epsilon     double precision NOT NULL DEFAULT 1.0 CHECK (privacy_epsilon > 0),
    metadata            jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    started_at          timestamptz,
    completed_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (completed_at IS NULL OR started_at IS NULL OR completed_at >= started_at)
);
CREATE INDEX federated_sessions_initiator_idx ON federated_sessions (initiator_tenant_id);
CREATE INDEX federated_sessions_status_idx ON federated_sessions (status, created_at DESC);

CREATE TABLE aggregated_insights (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id          uuid NOT NULL REFERENCES federated_sessions (id) ON DELETE CASCADE,
    insight_type        text NOT NULL CHECK (length(btrim(insight_type)) BETWEEN 1 AND 100),
    content             jsonb NOT NULL,
    confidence_score    double precision NOT NULL DEFAULT 0 CHECK (confidence_score BETWEEN 0 AND 1),
    participant_count   integer NOT NULL DEFAULT 0 CHECK (participant_count >= 0),
    privacy_budget_used double precision NOT NULL DEFAULT 0 CHECK (privacy_budget_used >= 0),
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX aggregated_insights_session_idx ON aggregated_insights (session_id, created_at DESC);

-- Audit rows grow forever: partitioned by month, archived by archive_old_audit_logs(days).
-- No foreign key to tenants: the trail outlives a deleted tenant.
CREATE TABLE audit_log (
    id            uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL DEFAULT mnemo_current_tenant(),
    api_key_id    uuid,
    actor         text NOT NULL DEFAULT 'api',
    action        text NOT NULL CHECK (length(action) BETWEEN 1 AND 100),
    resource_type text NOT NULL CHECK (length(resource_type) BETWEEN 1 AND 100),
    resource_id   text,
    outcome       text NOT NULL CHECK (outcome IN ('success', 'denied', 'not_found', 'invalid', 'conflict', 'error')),
    status_code   integer CHECK (status_code BETWEEN 100 AND 599),
    request_id    text,
    details       jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX audit_log_tenant_time_idx ON audit_log (tenant_id, created_at DESC);
CREATE INDEX audit_log_request_idx ON audit_log (request_id);
CREATE TABLE audit_log_default PARTITION OF audit_log DEFAULT;

CREATE TABLE audit_log_archive (
    id            uuid NOT NULL,
    tenant_id     uuid NOT NULL,
    api_key_id    uuid,
    actor         text NOT NULL,
    action        text NOT NULL,
    resource_type text NOT NULL,
    resource_id   text,
    outcome       text NOT NULL,
    status_code   integer,
    request_id    text,
    details       jsonb NOT NULL,
    created_at    timestamptz NOT NULL,
    archived_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id, created_at)
);
CREATE INDEX audit_log_archive_tenant_time_idx ON audit_log_archive (tenant_id, created_at DESC);

-- Metrics may belong to a tenant or to the whole system (tenant_id NULL), so this table stays on the
-- coordinator under Citus rather than being distributed.
CREATE TABLE performance_metrics (
    id           uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id    uuid,
    metric_type  text NOT NULL CHECK (length(btrim(metric_type)) BETWEEN 1 AND 100),
    metric_name  text NOT NULL CHECK (length(btrim(metric_name)) BETWEEN 1 AND 200),
    metric_value double precision NOT NULL CHECK (metric_value = metric_value AND metric_value NOT IN ('Infinity', '-Infinity')),
    metric_unit  text,
    tags         jsonb NOT NULL DEFAULT '{}',
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, recorded_at)
) PARTITION BY RANGE (recorded_at);
CREATE INDEX performance_metrics_time_idx ON performance_metrics (recorded_at DESC, metric_type, metric_name);
CREATE INDEX performance_metrics_tenant_idx ON performance_metrics (tenant_id, recorded_at DESC);
CREATE TABLE performance_metrics_default PARTITION OF performance_metrics DEFAULT;

CREATE TRIGGER projects_touch BEFORE UPDATE ON projects FOR EACH ROW EXECUTE FUNCTION mnemo_touch_updated_at();
CREATE TRIGGER tenants_touch BEFORE UPDATE ON tenants FOR EACH ROW EXECUTE FUNCTION mnemo_touch_updated_at();
CREATE TRIGGER tenant_access_policies_touch BEFORE UPDATE ON tenant_access_policies FOR EACH ROW EXECUTE FUNCTION mnemo_touch_updated_at();
CREATE TRIGGER tenant_sharing_rules_touch BEFORE UPDATE ON tenant_sharing_rules FOR EACH ROW EXECUTE FUNCTION mnemo_touch_updated_at();
CREATE TRIGGER data_retention_policies_touch BEFORE UPDATE ON data_retention_policies FOR EACH ROW EXECUTE FUNCTION mnemo_touch_updated_at();
CREATE TRIGGER contextual_memories_touch BEFORE UPDATE ON contextual_memories FOR EACH ROW EXECUTE FUNCTION mnemo_touch_updated_at();
CREATE TRIGGER offloaded_contexts_touch BEFORE UPDATE ON offloaded_contexts FOR EACH ROW EXECUTE FUNCTION mnemo_touch_updated_at();
CREATE TRIGGER federated_sessions_touch BEFORE UPDATE ON federated_sessions FOR EACH ROW EXECUTE FUNCTION mnemo_touch_updated_at();
