-- Row Level Security, grants, views, materialized views and maintenance functions.

-- The project of the current tenant, and of any tenant: SECURITY DEFINER because the application role
-- sees only its own row of `tenants`.
CREATE FUNCTION mnemo_tenant_project(p_tenant uuid) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$ SELECT project_id FROM tenants WHERE id = p_tenant $$;

CREATE FUNCTION mnemo_current_project() RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$ SELECT project_id FROM tenants WHERE id = mnemo_current_tenant() $$;

-- ---------------------------------------------------------------------------------------------
-- Row Level Security: enabled and forced everywhere. Tenant tables show the rows of the tenant set in
-- `app.tenant_id` and nothing when it is unset. The role that ran the migrations (the owner, used for
-- administration and maintenance) keeps an explicit policy that sees everything.
-- ---------------------------------------------------------------------------------------------
DO $$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY[
        'tenant_access_policies', 'tenant_sharing_rules', 'data_retention_policies',
        'contextual_memories', 'contextual_memories_archive', 'memory_relationships',
        'offloaded_contexts', 'federated_participants', 'audit_log', 'audit_log_archive',
        'performance_metrics'
    ] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', tbl);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', tbl);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = mnemo_current_tenant()) '
                       'WITH CHECK (tenant_id = mnemo_current_tenant())', tbl);
    END LOOP;

    FOREACH tbl IN ARRAY ARRAY[
        'projects', 'tenants', 'api_keys', 'mnemo_settings',
        'tenant_access_policies', 'tenant_sharing_rules', 'data_retention_policies',
        'contextual_memories', 'contextual_memories_archive', 'memory_relationships',
        'offloaded_contexts', 'federated_participants', 'federated_sessions', 'aggregated_insights',
        'audit_log', 'audit_log_archive', 'performance_metrics'
    ] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', tbl);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', tbl);
        EXECUTE format('CREATE POLICY owner_maintenance ON %I TO %I USING (true) WITH CHECK (true)',
                       tbl, current_user);
    END LOOP;
END
$$;

CREATE POLICY tenant_self ON tenants FOR SELECT USING (id = mnemo_current_tenant());
CREATE POLICY tenant_project ON projects FOR SELECT USING (id = mnemo_current_project());

-- Federated sessions are visible to the tenants of the initiator's project; only the initiator writes.
CREATE POLICY project_members_read ON federated_sessions FOR SELECT
    USING (mnemo_tenant_project(initiator_tenant_id) = mnemo_current_project());
CREATE POLICY initiator_insert ON federated_sessions FOR INSERT
    WITH CHECK (initiator_tenant_id = mnemo_current_tenant());
CREATE POLICY initiator_update ON federated_sessions FOR UPDATE
    USING (initiator_tenant_id = mnemo_current_tenant())
    WITH CHECK (initiator_tenant_id = mnemo_current_tenant());
CREATE POLICY session_visible_read ON aggregated_insights FOR SELECT
    USING (EXISTS (SELECT 1 FROM federated_sessions s WHERE s.id = aggregated_insights.session_id));
CREATE POLICY initiator_insert ON aggregated_insights FOR INSERT
    WITH CHECK (EXISTS (SELECT 1 FROM federated_sessions s
                        WHERE s.id = aggregated_insights.session_id AND s.initiator_tenant_id = mnemo_current_tenant()));

GRANT USAGE ON SCHEMA public TO mnemo_app;
GRANT SELECT ON projects, tenants TO mnemo_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON
    tenant_access_policies, tenant_sharing_rules, data_retention_policies, contextual_memories,
    memory_relationships, offloaded_contexts, federated_participants
    TO mnemo_app;
GRANT SELECT, INSERT, UPDATE ON federated_sessions, aggregated_insights TO mnemo_app;
-- The audit trail is append-only for the application.
GRANT SELECT, INSERT ON audit_log, performance_metrics TO mnemo_app;
GRANT SELECT ON contextual_memories_archive, audit_log_archive TO mnemo_app;
-- Retiring an expired memory before its id is reused may archive it (mnemo_retire_memories).
GRANT INSERT ON contextual_memories_archive TO mnemo_app;
-- api_keys and mnemo_settings: no grant; the application role cannot read key hashes.

-- ---------------------------------------------------------------------------------------------
-- Views (security_invoker: they apply the caller's Row Level Security, not the view owner's)
-- ---------------------------------------------------------------------------------------------

CREATE VIEW system_performance_summary WITH (security_invoker = true) AS
SELECT date_trunc('hour', recorded_at) AS hour,
       metric_type,
       metric_name,
       metric_unit,
       count(*) AS sample_count,
       count(DISTINCT tenant_id) AS tenant_count,
       avg(metric_value) AS avg_value,
       min(metric_value) AS min_value,
       max(metric_value) AS max_value,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY metric_value) AS p95_value
FROM performance_metrics
GROUP BY 1, 2, 3, 4;

-- One row a minute with activity: latency from metrics in milliseconds, errors from metrics of type
-- 'error'; status is 'degraded' when more than 5% of that minute's samples are errors.
CREATE VIEW system_health WITH (security_invoker = true) AS
SELECT date_trunc('minute', recorded_at) AS "timestamp",
       count(*) AS sample_count,
       count(DISTINCT tenant_id) AS active_tenants,
       count(*) FILTER (WHERE metric_type = 'error') AS error_count,
       avg(metric_value) FILTER (WHERE metric_unit = 'ms') AS avg_latency_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY metric_value) FILTER (WHERE metric_unit = 'ms') AS p99_latency_ms,
       CASE WHEN count(*) FILTER (WHERE metric_type = 'error') > 0.05 * count(*) THEN 'degraded'
            ELSE 'healthy' END AS status
FROM performance_metrics
GROUP BY 1;

CREATE VIEW tenant_overview WITH (security_invoker = true) AS
SELECT t.id,
       t.tenant_id,
       t.name,
       t.project_id,
       p.name AS project_name,
       t.isolation_level,
       t.encryption_enabled,
       t.is_active,
       t.max_memories,
       t.max_storage_bytes,
       (SELECT count(*) FROM contextual_memories m WHERE m.tenant_id = t.id) AS memory_count,
       (SELECT count(*) FROM memory_relationships r WHERE r.tenant_id = t.id) AS relationship_count,
       (SELECT count(*) FROM offloaded_contexts c WHERE c.tenant_id = t.id) AS offloaded_context_count,
       (SELECT max(a.created_at) FROM audit_log a WHERE a.tenant_id = t.id) AS last_activity_at,
       t.created_at
FROM tenants t
JOIN projects p ON p.id = t.project_id;

CREATE VIEW memory_usage_stats WITH (security_invoker = true) AS
SELECT tenant_id,
       count(*) AS total_memories,
       count(*) FILTER (WHERE expires_at IS NULL OR expires_at > now()) AS active_memories,
       count(*) FILTER (WHERE expires_at <= now()) AS expired_memories,
       count(embedding) AS embedded_memories,
       coalesce(sum(content_bytes), 0)::bigint AS total_content_bytes,
       avg(relevance_score) AS avg_relevance,
       min(created_at) AS oldest_memory_at,
       max(created_at) AS newest_memory_at
FROM contextual_memories
GROUP BY tenant_id;

CREATE VIEW federated_learning_stats WITH (security_invoker = true) AS
SELECT s.id,
       s.session_id,
       s.topic,
       s.status,
       s.aggregation_method,
       s.initiator_tenant_id,
       count(i.id) AS insight_count,
       avg(i.confidence_score) AS avg_confidence,
       coalesce(max(i.participant_count), 0) AS max_participants_aggregated,
       coalesce(sum(i.privacy_budget_used), 0) AS privacy_budget_used,
       s.created_at,
       s.completed_at,
       s.completed_at - s.started_at AS duration
FROM federated_sessions s
LEFT JOIN aggregated_insights i ON i.session_id = s.id
GROUP BY s.id;

GRANT SELECT ON system_performance_summary, system_health, tenant_overview, memory_usage_stats,
    federated_learning_stats TO mnemo_app;

-- ---------------------------------------------------------------------------------------------
-- Materialized analytics views: each has a unique index so REFRESH ... CONCURRENTLY works. They hold
-- every tenant's figures, so only the owner reads them (no grant to mnemo_app).
-- ---------------------------------------------------------------------------------------------

CREATE MATERIALIZED VIEW tenant_memory_analytics AS
SELECT t.id AS tenant_id,
       t.tenant_id AS tenant_key,
       t.project_id,
       count(m.id) AS memory_count,
       count(m.embedding) AS embedded_count,
       coalesce(sum(m.content_bytes), 0)::bigint AS content_bytes,
       avg(m.relevance_score) AS avg_relevance,
       max(m.created_at) AS last_memory_at
FROM tenants t
LEFT JOIN contextual_memories m ON m.tenant_id = t.id
GROUP BY t.id;
CREATE UNIQUE INDEX tenant_memory_analytics_key ON tenant_memory_analytics (tenant_id);

CREATE MATERIALIZED VIEW tenant_daily_activity AS
SELECT tenant_id,
       (date_trunc('day', created_at AT TIME ZONE 'UTC'))::date AS day,
       action,
       outcome,
       count(*) AS operations
FROM audit_log
GROUP BY 1, 2, 3, 4;
CREATE UNIQUE INDEX tenant_daily_activity_key ON tenant_daily_activity (tenant_id, day, action, outcome);

CREATE FUNCTION refresh_analytics_views() RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    REFRESH MATERIALIZED VIEW CONCURRENTLY tenant_memory_analytics;
    REFRESH MATERIALIZED VIEW CONCURRENTLY tenant_daily_activity;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Maintenance functions
-- ---------------------------------------------------------------------------------------------

-- Retires memories that expired (expires_at passed) or outlived their tenant's retention policy
-- (retention_days), as that policy's archival_policy says: 'delete' (the default without a policy)
-- deletes, 'archive' moves the row to contextual_memories_archive, 'retain' keeps it. Optionally
-- only one tenant's, or only some memory_ids (the service retires an expired memory before reusing
-- its id). Runs with the caller's rights: as mnemo_app, Row Level Security confines it to the
-- current tenant. Returns how many memories left contextual_memories.
CREATE FUNCTION mnemo_retire_memories(p_tenant uuid DEFAULT NULL, p_memory_ids text[] DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    removed integer;
BEGIN
    WITH doomed AS (
        SELECT m.tenant_id, m.id, coalesce(p.archival_policy, 'delete') AS policy
        FROM contextual_memories m
        LEFT JOIN data_retention_policies p
               ON p.tenant_id = m.tenant_id AND p.resource_type = 'memories' AND p.is_active
        WHERE (m.expires_at <= now()
               OR (p.retention_days IS NOT NULL
                   AND m.created_at < now() - make_interval(days => p.retention_days)))
          AND coalesce(p.archival_policy, 'delete') <> 'retain'
          AND (p_tenant IS NULL OR m.tenant_id = p_tenant)
          AND (p_memory_ids IS NULL OR m.memory_id = ANY (p_memory_ids))
    ),
    deleted AS (
        DELETE FROM contextual_memories m
        USING doomed d
        WHERE m.tenant_id = d.tenant_id AND m.id = d.id
        RETURNING m.*, d.policy
    ),
    archived AS (
        INSERT INTO contextual_memories_archive
            (id, tenant_id, memory_id, relevance_score, content, tags, metadata, embedding,
             embedding_model, expires_at, created_at, updated_at)
        SELECT id, tenant_id, memory_id, relevance_score, content, tags, metadata, embedding,
               embedding_model, expires_at, created_at, updated_at
        FROM deleted
        WHERE policy = 'archive'
        RETURNING 1
    )
    SELECT count(*) INTO removed FROM deleted;
    RETURN removed;
END
$$;

-- The seed's maintenance task: retire every tenant's expired memories (see mnemo_retire_memories).
CREATE FUNCTION clean_expired_memories() RETURNS integer
LANGUAGE sql
AS $$ SELECT mnemo_retire_memories() $$;

-- Moves audit rows older than `days` days into audit_log_archive (where they stay readable) and
-- returns how many moved.
CREATE FUNCTION archive_old_audit_logs(days integer) RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    moved integer;
BEGIN
    IF days IS NULL OR days < 0 THEN
        RAISE EXCEPTION 'archive_old_audit_logs: days must be >= 0, got %', days
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    WITH old AS (
        DELETE FROM audit_log
        WHERE created_at < now() - make_interval(days => days)
        RETURNING *
    )
    INSERT INTO audit_log_archive
        (id, tenant_id, api_key_id, actor, action, resource_type, resource_id, outcome, status_code,
         request_id, details, created_at)
    SELECT id, tenant_id, api_key_id, actor, action, resource_type, resource_id, outcome, status_code,
           request_id, details, created_at
    FROM old;
    GET DIAGNOSTICS moved = ROW_COUNT;
    RETURN moved;
END
$$;

-- Storage bytes count the JSON content plus 4 bytes per embedding dimension.
CREATE FUNCTION get_tenant_memory_usage(p_tenant_id uuid)
RETURNS TABLE (
    tenant_id               uuid,
    total_memories          bigint,
    active_memories         bigint,
    expired_memories        bigint,
    embedded_memories       bigint,
    content_bytes           bigint,
    embedding_bytes         bigint,
    storage_bytes           bigint,
    avg_relevance           double precision,
    relationship_count      bigint,
    offloaded_context_count bigint,
    max_memories            bigint,
    max_storage_bytes       bigint,
    oldest_memory_at        timestamptz,
    newest_memory_at        timestamptz
)
LANGUAGE sql STABLE
AS $$
    WITH m AS (
        SELECT count(*) AS total,
               count(*) FILTER (WHERE expires_at IS NULL OR expires_at > now()) AS active,
               count(*) FILTER (WHERE expires_at <= now()) AS expired,
               count(embedding) AS embedded,
               coalesce(sum(content_bytes), 0)::bigint AS content_bytes,
               (count(embedding) * 384 * 4)::bigint AS embedding_bytes,
               avg(relevance_score) AS avg_relevance,
               min(created_at) AS oldest,
               max(created_at) AS newest
        FROM contextual_memories
        WHERE tenant_id = p_tenant_id
    )
    SELECT p_tenant_id, m.total, m.active, m.expired, m.embedded, m.content_bytes, m.embedding_bytes,
           m.content_bytes + m.embedding_bytes, m.avg_relevance,
           (SELECT count(*) FROM memory_relationships r WHERE r.tenant_id = p_tenant_id),
           (SELECT count(*) FROM offloaded_contexts c WHERE c.tenant_id = p_tenant_id),
           t.max_memories, t.max_storage_bytes, m.oldest, m.newest
    FROM m
    LEFT JOIN tenants t ON t.id = p_tenant_id
$$;

CREATE FUNCTION log_performance_metric(
    p_tenant_id    uuid,
    p_metric_type  text,
    p_metric_name  text,
    p_metric_value double precision,
    p_metric_unit  text DEFAULT NULL,
    p_tags         jsonb DEFAULT '{}'
) RETURNS uuid
LANGUAGE sql
AS $$
    INSERT INTO performance_metrics (tenant_id, metric_type, metric_name, metric_value, metric_unit, tags)
    VALUES (p_tenant_id, p_metric_type, p_metric_name, p_metric_value, p_metric_unit, coalesce(p_tags, '{}'))
    RETURNING id
$$;

-- Creates the monthly partitions of audit_log and performance_metrics from this month (UTC) to
-- `months_ahead` months ahead. Rows that already landed in a default partition for such a month are
-- moved into the new partition first, so creation never fails and nothing is lost. Returns how many
-- partitions it created; the service calls it at start and daily.
CREATE FUNCTION create_time_partitions(months_ahead integer DEFAULT 3) RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    target record;
    first_month timestamp := date_trunc('month', now() AT TIME ZONE 'UTC');
    month_start timestamp;
    lo timestamptz;
    hi timestamptz;
    part text;
    created integer := 0;
BEGIN
    IF months_ahead IS NULL OR months_ahead < 0 OR months_ahead > 120 THEN
        RAISE EXCEPTION 'create_time_partitions: months_ahead must be in 0..120, got %', months_ahead
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR target IN SELECT * FROM (VALUES ('audit_log', 'created_at'), ('performance_metrics', 'recorded_at')) AS v(tbl, col)
    LOOP
        FOR i IN 0..months_ahead LOOP
            month_start := first_month + make_interval(months => i);
            lo := month_start AT TIME ZONE 'UTC';
            hi := (month_start + interval '1 month') AT TIME ZONE 'UTC';
            part := format('%s_p%s', target.tbl, to_char(month_start, 'YYYYMM'));
            CONTINUE WHEN to_regclass(part) IS NOT NULL;
            EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part, target.tbl);
            EXECUTE format('WITH moved AS (DELETE FROM %I WHERE %I >= $1 AND %I < $2 RETURNING *) '
                           'INSERT INTO %I SELECT * FROM moved',
                           target.tbl || '_default', target.col, target.col, part)
                USING lo, hi;
            EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                           target.tbl, part, lo, hi);
            created := created + 1;
        END LOOP;
    END LOOP;
    RETURN created;
END
$$;

SELECT create_time_partitions(3);

REVOKE EXECUTE ON FUNCTION refresh_analytics_views(), clean_expired_memories(), archive_old_audit_logs(integer),
    create_time_partitions(integer), mnemo_tenant_project(uuid) FROM PUBLIC;
-- The federated_sessions read policy calls mnemo_tenant_project() as the querying role.
GRANT EXECUTE ON FUNCTION mnemo_tenant_project(uuid) TO mnemo_app;
