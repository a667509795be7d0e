-- Operations (issue 17): retention and archival that tenants control, archives that keep memories,
-- their relationships and contexts restorable, access tracking that does not rewrite updated_at,
-- whole-partition retention for the audit trail and the performance history, and a system_health
-- view that reads what the service samples every minute.

-- ---------------------------------------------------------------------------------------------
-- Retention policies: keep the newest N, and which timestamp counts
-- ---------------------------------------------------------------------------------------------
-- basis 'created_at': a row's age is the time since it was created. 'last_access': since it was
-- last used, the later of its last write (updated_at, which creation sets) and its last read
-- (last_accessed_at, recorded by the service; see docs/operations.md for the granularity).
-- The audit trail is kept and removed by whole monthly partitions shared by every tenant: a count
-- cannot be honoured there, and audit rows are never read "again", so only age by creation applies.
ALTER TABLE data_retention_policies
    ADD COLUMN max_count integer CHECK (max_count > 0),
    ADD COLUMN basis text NOT NULL DEFAULT 'created_at' CHECK (basis IN ('created_at', 'last_access')),
    ADD CONSTRAINT data_retention_policies_audit_by_age
        CHECK (resource_type <> 'audit_log' OR (max_count IS NULL AND basis = 'created_at'));

-- Access policies may now narrow what keys do with retention policies (scope `retention:*`).
ALTER TABLE tenant_access_policies DROP CONSTRAINT tenant_access_policies_resource_type_check;
ALTER TABLE tenant_access_policies ADD CONSTRAINT tenant_access_policies_resource_type_check
    CHECK (resource_type IN ('memories', 'relationships', 'contexts', 'federated', 'audit', 'usage',
                             'policies', 'retention'));

-- ---------------------------------------------------------------------------------------------
-- Access tracking
-- ---------------------------------------------------------------------------------------------
-- The service adds reads to access_count / last_accessed_at in batches; such an update records a
-- read, not an edit, so it leaves updated_at alone. (Replaces 0001's trigger; through the parent, so
-- it holds for every partition.)
DROP TRIGGER contextual_memories_touch ON contextual_memories;
CREATE TRIGGER contextual_memories_touch BEFORE UPDATE ON contextual_memories FOR EACH ROW
    WHEN ((OLD.access_count, OLD.last_accessed_at) IS NOT DISTINCT FROM (NEW.access_count, NEW.last_accessed_at))
    EXECUTE FUNCTION mnemo_touch_updated_at();

-- Retention by last access walks a tenant's rows oldest-used first (creation: the recent_idx
-- indexes, read backwards).
CREATE INDEX contextual_memories_last_use_idx
    ON contextual_memories (tenant_id, (greatest(updated_at, last_accessed_at)), id);
CREATE INDEX offloaded_contexts_created_idx ON offloaded_contexts (tenant_id, created_at, id);
CREATE INDEX offloaded_contexts_last_use_idx
    ON offloaded_contexts (tenant_id, (greatest(updated_at, last_accessed_at)), id);

-- ---------------------------------------------------------------------------------------------
-- Archives
-- ---------------------------------------------------------------------------------------------
-- Archived memories keep what their reads recorded, and are listed newest-archived first.
ALTER TABLE contextual_memories_archive
    ADD COLUMN access_count bigint NOT NULL DEFAULT 0,
    ADD COLUMN last_accessed_at timestamptz;
CREATE INDEX contextual_memories_archive_recent_idx
    ON contextual_memories_archive (tenant_id, archived_at DESC, id DESC);

-- Edges of archived memories, so that a restore brings them back once both ends are live again.
-- No foreign key to the memories: an end may itself be archived.
CREATE TABLE memory_relationships_archive (
    id                uuid NOT NULL,
    tenant_id         uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    source_memory_id  uuid NOT NULL,
    target_memory_id  uuid NOT NULL,
    relationship_type text NOT NULL,
    weight            double precision NOT NULL,
    metadata          jsonb NOT NULL,
    created_at        timestamptz NOT NULL,
    archived_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX memory_relationships_archive_source_idx ON memory_relationships_archive (tenant_id, source_memory_id);
CREATE INDEX memory_relationships_archive_target_idx ON memory_relationships_archive (tenant_id, target_memory_id);

-- Archived contexts: the row exactly as it was (every column of offloaded_contexts as the earlier
-- migrations left it), without its chunks, which are derived from the stored content.
CREATE TABLE offloaded_contexts_archive (LIKE offloaded_contexts);
ALTER TABLE offloaded_contexts_archive
    ADD COLUMN archived_at timestamptz NOT NULL DEFAULT now(),
    ADD PRIMARY KEY (tenant_id, id),
    ADD FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE;
CREATE INDEX offloaded_contexts_archive_context_idx ON offloaded_contexts_archive (tenant_id, context_id);

DO $$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['memory_relationships_archive', 'offloaded_contexts_archive'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', tbl);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', tbl);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = mnemo_current_tenant()) '
                       'WITH CHECK (tenant_id = mnemo_current_tenant())', tbl);
        EXECUTE format('CREATE POLICY owner_maintenance ON %I TO %I USING (true) WITH CHECK (true)',
                       tbl, current_user);
    END LOOP;
END
$$;

-- A tenant request restores its archived memories (and their edges) and, removing a memory for
-- good, removes the archived edges that pointed at it.
GRANT SELECT, INSERT, DELETE ON contextual_memories_archive, memory_relationships_archive TO mnemo_app;
GRANT SELECT ON offloaded_contexts_archive TO mnemo_app;

-- (Replaces 0003's version.) Also moves the edges of archived memories to
-- memory_relationships_archive, unless an end is being deleted for good (such an edge could never
-- come back), and forgets archived edges that pointed at a memory deleted for good.
CREATE OR REPLACE FUNCTION mnemo_remove_memories(p_tenants uuid[], p_ids uuid[], p_archive boolean[])
RETURNS TABLE (tenant_id uuid, memories bigint, content_bytes bigint, embedded bigint,
               relationships bigint, relationship_bytes bigint)
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY
    WITH k AS (
        SELECT * FROM unnest(p_tenants, p_ids, p_archive) AS k(tenant_id, id, archive)
    ),
    edges AS (
        SELECT r.tenant_id, r.id FROM memory_relationships r JOIN k
            ON r.tenant_id = k.tenant_id AND r.source_memory_id = k.id
        UNION
        SELECT r.tenant_id, r.id FROM memory_relationships r JOIN k
            ON r.tenant_id = k.tenant_id AND r.target_memory_id = k.id
    ),
    rel AS (
        DELETE FROM memory_relationships r USING edges e
        WHERE r.tenant_id = e.tenant_id AND r.id = e.id
        RETURNING r.*, octet_length(r.metadata::text)::bigint AS bytes
    ),
    rel_archived AS (
        INSERT INTO memory_relationships_archive
            (id, tenant_id, source_memory_id, target_memory_id, relationship_type, weight, metadata, created_at)
        SELECT r.id, r.tenant_id, r.source_memory_id, r.target_memory_id, r.relationship_type, r.weight,
               r.metadata, r.created_at
        FROM rel r
        WHERE EXISTS (SELECT 1 FROM k WHERE k.archive AND k.tenant_id = r.tenant_id
                                        AND k.id IN (r.source_memory_id, r.target_memory_id))
          AND NOT EXISTS (SELECT 1 FROM k WHERE NOT k.archive AND k.tenant_id = r.tenant_id
                                            AND k.id IN (r.source_memory_id, r.target_memory_id))
        ON CONFLICT DO NOTHING
        RETURNING 1
    ),
    orphaned AS (
        DELETE FROM memory_relationships_archive ra USING k
        WHERE NOT k.archive AND ra.tenant_id = k.tenant_id
          AND (ra.source_memory_id = k.id OR ra.target_memory_id = k.id)
        RETURNING 1
    ),
    gone AS (
        DELETE FROM contextual_memories m USING k
        WHERE m.tenant_id = k.tenant_id AND m.id = k.id
        RETURNING m.*, k.archive
    ),
    archived AS (
        INSERT INTO contextual_memories_archive
            (id, tenant_id, memory_id, relevance_score, content, tags, metadata, embedding,
             embedding_model, expires_at, created_at, updated_at, access_count, last_accessed_at)
        SELECT g.id, g.tenant_id, g.memory_id, g.relevance_score, g.content, g.tags, g.metadata,
               g.embedding, g.embedding_model, g.expires_at, g.created_at, g.updated_at,
               g.access_count, g.last_accessed_at
        FROM gone g WHERE g.archive
        RETURNING 1
    ),
    mem_sum AS (
        SELECT g.tenant_id, count(*) AS n, coalesce(sum(g.content_bytes), 0)::bigint AS bytes,
               count(g.embedding) AS embedded
        FROM gone g GROUP BY g.tenant_id
    ),
    rel_sum AS (
        SELECT rel.tenant_id, count(*) AS n, coalesce(sum(rel.bytes), 0)::bigint AS bytes
        FROM rel GROUP BY rel.tenant_id
    )
    SELECT coalesce(ms.tenant_id, rs.tenant_id), coalesce(ms.n, 0), coalesce(ms.bytes, 0),
           coalesce(ms.embedded, 0), coalesce(rs.n, 0), coalesce(rs.bytes, 0)
    FROM mem_sum ms FULL JOIN rel_sum rs ON rs.tenant_id = ms.tenant_id;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- The retention rule, in one place
-- ---------------------------------------------------------------------------------------------
-- A tenant's live (unexpired) memories or contexts are ordered by (basis time, id). Its active
-- policy for the resource, unless 'retain', makes every row strictly before a bound due:
--   retention_days  the bound (now − days, the smallest id): rows older than that;
--   max_count       the bound (the max_count-th newest row): all but the newest max_count;
-- both: the later bound. Expired rows are left to the expiry cleanup (clean_expired_memories).
-- mnemo_retention_plan() computes the bound once (a count bound reads max_count index entries);
-- mnemo_retention_due() lists the due rows oldest first; the preview reads them and a run locks
-- and removes them in batches, so both see the same rows.

-- The basis time of a row of contextual_memories or offloaded_contexts, as SQL text.
CREATE FUNCTION mnemo_retention_basis_sql(p_basis text) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$ SELECT CASE p_basis WHEN 'last_access' THEN 'greatest(updated_at, last_accessed_at)' ELSE 'created_at' END $$;

CREATE FUNCTION mnemo_retention_table(p_resource text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    RETURN CASE p_resource WHEN 'memories' THEN 'contextual_memories'
                           WHEN 'contexts' THEN 'offloaded_contexts' END;
END
$$;

-- What the tenant's active policy for `p_resource` (memories or contexts) removes now: nothing
-- (no row) without such a policy, under 'retain', or when no row is due; otherwise how (archive or
-- delete), by which basis, and the bound.
CREATE FUNCTION mnemo_retention_plan(p_tenant uuid, p_resource text)
RETURNS TABLE (basis text, archive boolean, bound_at timestamptz, bound_id uuid)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    p data_retention_policies;
    v_at timestamptz;
    v_id uuid;
    n_at timestamptz;
    n_id uuid;
BEGIN
    IF mnemo_retention_table(p_resource) IS NULL THEN
        RETURN;
    END IF;
    SELECT * INTO p FROM data_retention_policies d
    WHERE d.tenant_id = p_tenant AND d.resource_type = p_resource AND d.is_active;
    IF NOT FOUND OR p.archival_policy = 'retain' THEN
        RETURN;
    END IF;
    IF p.retention_days IS NOT NULL THEN
        v_at := now() - make_interval(days => p.retention_days);
        v_id := '00000000-0000-0000-0000-000000000000';
    END IF;
    IF p.max_count IS NOT NULL THEN
        EXECUTE format('SELECT %1$s, id FROM %2$I WHERE tenant_id = $1 AND (expires_at IS NULL OR expires_at > now())
                        ORDER BY %1$s DESC, id DESC OFFSET $2 LIMIT 1',
                       mnemo_retention_basis_sql(p.basis), mnemo_retention_table(p_resource))
            INTO n_at, n_id USING p_tenant, p.max_count - 1;
        IF n_id IS NOT NULL AND (v_at IS NULL OR (n_at, n_id) > (v_at, v_id)) THEN
            v_at := n_at;
            v_id := n_id;
        END IF;
    END IF;
    IF v_at IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT p.basis, p.archival_policy = 'archive', v_at, v_id;
END
$$;

-- The due rows under a plan, oldest first, at most p_limit (NULL: all); with p_lock, locked
-- (FOR UPDATE SKIP LOCKED: a row another transaction holds is left for the next batch, and a row
-- changed meanwhile is checked again against the bound).
CREATE FUNCTION mnemo_retention_due(p_tenant uuid, p_resource text, p_basis text, p_bound_at timestamptz,
                                    p_bound_id uuid, p_limit integer, p_lock boolean)
RETURNS TABLE (id uuid, key text)
LANGUAGE plpgsql
AS $$
DECLARE
    at_sql text := mnemo_retention_basis_sql(p_basis);
BEGIN
    IF mnemo_retention_table(p_resource) IS NULL OR p_bound_at IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT id, %1$s FROM %2$I WHERE tenant_id = $1 AND (expires_at IS NULL OR expires_at > now())
           AND (%3$s, id) < ($2, $3) ORDER BY %3$s, id LIMIT $4 %4$s',
        CASE p_resource WHEN 'memories' THEN 'memory_id' ELSE 'context_id' END,
        mnemo_retention_table(p_resource), at_sql,
        CASE WHEN p_lock THEN 'FOR UPDATE SKIP LOCKED' ELSE '' END)
        USING p_tenant, p_bound_at, p_bound_id, p_limit;
END
$$;

-- One batch of a retention run: locks up to p_limit due rows and removes them (archiving when the
-- plan says so) with everything they count in the tenant's usage. Returns the keys removed.
CREATE FUNCTION mnemo_apply_retention_batch(p_tenant uuid, p_resource text, p_basis text, p_archive boolean,
                                            p_bound_at timestamptz, p_bound_id uuid, p_limit integer)
RETURNS TABLE (key text)
LANGUAGE plpgsql
AS $$
DECLARE
    v_ids uuid[];
    v_keys text[];
    v_n bigint;
    v_bytes bigint;
BEGIN
    SELECT array_agg(d.id ORDER BY d.id), array_agg(d.key ORDER BY d.id) INTO v_ids, v_keys
    FROM mnemo_retention_due(p_tenant, p_resource, p_basis, p_bound_at, p_bound_id, p_limit, true) AS d;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;
    IF p_resource = 'memories' THEN
        PERFORM mnemo_remove_and_count(array_fill(p_tenant, ARRAY[cardinality(v_ids)]), v_ids,
                                       array_fill(p_archive, ARRAY[cardinality(v_ids)]));
    ELSE
        -- Chunks go with their context (foreign key cascade); its bytes include theirs.
        WITH doomed AS (
            DELETE FROM offloaded_contexts c WHERE c.tenant_id = p_tenant AND c.id = ANY (v_ids)
            RETURNING c AS row, mnemo_context_bytes(c) AS bytes
        ),
        archived AS (
            INSERT INTO offloaded_contexts_archive SELECT (d.row).*, now() FROM doomed d WHERE p_archive
            RETURNING 1
        )
        SELECT count(*), coalesce(sum(d.bytes), 0)::bigint INTO v_n, v_bytes FROM doomed d;
        PERFORM mnemo_usage_add(p_tenant, 0, 0, 0, 0, 0, -v_n, -v_bytes);
    END IF;
    RETURN QUERY SELECT unnest(v_keys);
END
$$;

-- (Replaces 0003's version, which knew only retention_days by creation.) One batch of every
-- tenant's memories due under its policy, for the seed's clean_expired_memories(); the service runs
-- the same rule per tenant (`Store::apply_retention`). Returns how many it retired.
CREATE OR REPLACE FUNCTION mnemo_clean_aged_batch(p_limit integer) RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    p record;
    n integer := 0;
BEGIN
    FOR p IN
        SELECT d.tenant_id, x.* FROM data_retention_policies d
        CROSS JOIN LATERAL mnemo_retention_plan(d.tenant_id, 'memories') AS x
        WHERE d.resource_type = 'memories' AND d.is_active AND d.archival_policy <> 'retain'
        ORDER BY d.tenant_id
    LOOP
        EXIT WHEN n >= p_limit;
        n := n + (SELECT count(*) FROM mnemo_apply_retention_batch(p.tenant_id, 'memories', p.basis, p.archive,
                                                                    p.bound_at, p.bound_id, p_limit - n));
    END LOOP;
    RETURN n;
END
$$;

-- (Replaces 0003's version.) Expired memories as their tenant's policy says, and memories due under
-- it (the rule above), optionally of one tenant or some memory_ids; rows locked and re-checked.
CREATE OR REPLACE FUNCTION mnemo_retire_memories(p_tenant uuid DEFAULT NULL, p_memory_ids text[] DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    t uuid[];
    i uuid[];
    a boolean[];
BEGIN
    WITH plans AS (
        SELECT d.tenant_id, x.* FROM data_retention_policies d
        CROSS JOIN LATERAL mnemo_retention_plan(d.tenant_id, 'memories') AS x
        WHERE d.resource_type = 'memories' AND d.is_active AND d.archival_policy <> 'retain'
          AND (p_tenant IS NULL OR d.tenant_id = p_tenant)
    )
    SELECT array_agg(s.tenant_id), array_agg(s.id), array_agg(s.policy = 'archive') INTO t, i, a
    FROM (
        SELECT m.tenant_id, m.id, coalesce(p.archival_policy, 'delete') AS policy
        FROM contextual_memories m
        LEFT JOIN data_retention_policies p
               ON p.tenant_id = m.tenant_id AND p.resource_type = 'memories' AND p.is_active
        LEFT JOIN plans b ON b.tenant_id = m.tenant_id
        WHERE ((m.expires_at <= now() AND coalesce(p.archival_policy, 'delete') <> 'retain')
               OR ((m.expires_at IS NULL OR m.expires_at > now())
                   AND (CASE b.basis WHEN 'last_access' THEN greatest(m.updated_at, m.last_accessed_at)
                                     ELSE m.created_at END, m.id) < (b.bound_at, b.bound_id)))
          AND (p_tenant IS NULL OR m.tenant_id = p_tenant)
          AND (p_memory_ids IS NULL OR m.memory_id = ANY (p_memory_ids))
        ORDER BY m.tenant_id, m.id
        FOR UPDATE OF m
    ) AS s;
    RETURN mnemo_remove_and_count(t, i, a);
END
$$;

-- Brings an archived memory back (the latest archived version of p_memory_id), with the archived
-- edges whose both ends are then live. The caller has made sure no live memory holds the id, and
-- books the returned figures (quotas apply). Runs with the caller's rights: as mnemo_app, only the
-- current tenant's archive. A memory whose expiry passed while archived comes back without one.
CREATE FUNCTION mnemo_restore_memory(p_tenant uuid, p_memory_id text)
RETURNS TABLE (id uuid, memories bigint, content_bytes bigint, embedded bigint, relationships bigint,
               relationship_bytes bigint)
LANGUAGE plpgsql
AS $$
DECLARE
    v_id uuid;
    v_bytes bigint;
    v_embedded bigint;
    v_edges bigint;
    v_edge_bytes bigint;
BEGIN
    SELECT a.id INTO v_id FROM contextual_memories_archive a
    WHERE a.tenant_id = p_tenant AND a.memory_id = p_memory_id
    ORDER BY a.archived_at DESC, a.id DESC LIMIT 1
    FOR UPDATE;
    IF v_id IS NULL THEN
        RETURN;
    END IF;
    WITH back AS (
        DELETE FROM contextual_memories_archive a WHERE a.tenant_id = p_tenant AND a.id = v_id
        RETURNING a.*
    )
    INSERT INTO contextual_memories AS m
        (id, tenant_id, memory_id, relevance_score, content, tags, metadata, embedding, embedding_model,
         expires_at, created_at, access_count, last_accessed_at)
    SELECT b.id, b.tenant_id, b.memory_id, b.relevance_score, b.content, b.tags, b.metadata, b.embedding,
           b.embedding_model, CASE WHEN b.expires_at > now() THEN b.expires_at END, b.created_at,
           b.access_count, b.last_accessed_at
    FROM back b
    RETURNING m.content_bytes, (m.embedding IS NOT NULL)::int INTO v_bytes, v_embedded;
    WITH ready AS (
        DELETE FROM memory_relationships_archive ra
        WHERE ra.tenant_id = p_tenant AND (ra.source_memory_id = v_id OR ra.target_memory_id = v_id)
          AND EXISTS (SELECT 1 FROM contextual_memories s WHERE s.tenant_id = p_tenant AND s.id = ra.source_memory_id)
          AND EXISTS (SELECT 1 FROM contextual_memories t WHERE t.tenant_id = p_tenant AND t.id = ra.target_memory_id)
        RETURNING ra.*
    ),
    linked AS (
        -- An edge of the same (source, target, type) made since wins; the archived one is dropped.
        INSERT INTO memory_relationships
            (id, tenant_id, source_memory_id, target_memory_id, relationship_type, weight, metadata, created_at)
        SELECT r.id, r.tenant_id, r.source_memory_id, r.target_memory_id, r.relationship_type, r.weight,
               r.metadata, r.created_at
        FROM ready r
        ON CONFLICT DO NOTHING
        RETURNING octet_length(metadata::text)::bigint AS bytes
    )
    SELECT count(*), coalesce(sum(l.bytes), 0)::bigint INTO v_edges, v_edge_bytes FROM linked l;
    RETURN QUERY SELECT v_id, 1::bigint, v_bytes, v_embedded, v_edges, v_edge_bytes;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Whole-partition retention: the audit archive and the performance history
-- ---------------------------------------------------------------------------------------------
-- The monthly partitions of `p_parent` whose every row is older than p_days days, with their
-- bounds, oldest first (the default partition is never one of them).
CREATE FUNCTION mnemo_old_partitions(p_parent regclass, p_days integer)
RETURNS TABLE (rel regclass, lo timestamptz, hi timestamptz)
LANGUAGE sql STABLE
AS $$
    SELECT c.oid::regclass, b[1]::timestamptz, b[2]::timestamptz
    FROM pg_inherits h
    JOIN pg_class c ON c.oid = h.inhrelid
    CROSS JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                    '^FOR VALUES FROM \(''([^'']+)''\) TO \(''([^'']+)''\)$') AS b
    WHERE h.inhparent = p_parent AND b IS NOT NULL
      AND b[2]::timestamptz <= now() - make_interval(days => p_days)
    ORDER BY 2
$$;

-- Drops the archived audit months (partitions of audit_log_archive) all of whose rows are older
-- than p_days days, except months holding rows of a tenant whose active audit_log policy says
-- 'archive' or 'retain': those stay until every such row is older than the policy's retention_days
-- (for ever without one). Never deletes single rows. Returns the partitions dropped.
CREATE FUNCTION mnemo_drop_audit_months(p_days integer) RETURNS text[]
LANGUAGE plpgsql
AS $$
DECLARE
    part record;
    held boolean;
    dropped text[] := '{}';
    lock_wait text := current_setting('lock_timeout');
BEGIN
    IF p_days IS NULL OR p_days < 1 THEN
        RAISE EXCEPTION 'mnemo_drop_audit_months: days must be >= 1, got %', p_days
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_advisory_xact_lock(727275);
    FOR part IN SELECT * FROM mnemo_old_partitions('audit_log_archive', p_days) LOOP
        EXECUTE format(
            'SELECT EXISTS (SELECT 1 FROM data_retention_policies p
                            WHERE p.resource_type = ''audit_log'' AND p.is_active
                              AND p.archival_policy IN (''archive'', ''retain'')
                              AND (p.retention_days IS NULL OR $1 > now() - make_interval(days => p.retention_days))
                              AND EXISTS (SELECT 1 FROM %s a WHERE a.tenant_id = p.tenant_id))', part.rel)
            INTO held USING part.hi;
        CONTINUE WHEN held;
        BEGIN
            PERFORM set_config('lock_timeout', '5s', true);
            EXECUTE format('DROP TABLE %s', part.rel);
            dropped := dropped || part.rel::text;
            PERFORM set_config('lock_timeout', lock_wait, true);
        EXCEPTION WHEN lock_not_available THEN
            RAISE NOTICE 'audit_log_archive is busy; % is dropped next time', part.rel;
        END;
    END LOOP;
    RETURN dropped;
END
$$;

-- Drops the months of performance_metrics all of whose rows are older than p_days days.
CREATE FUNCTION mnemo_drop_metric_months(p_days integer) RETURNS text[]
LANGUAGE plpgsql
AS $$
DECLARE
    part record;
    dropped text[] := '{}';
    lock_wait text := current_setting('lock_timeout');
BEGIN
    IF p_days IS NULL OR p_days < 1 THEN
        RAISE EXCEPTION 'mnemo_drop_metric_months: days must be >= 1, got %', p_days
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_advisory_xact_lock(727274);
    FOR part IN SELECT * FROM mnemo_old_partitions('performance_metrics', p_days) LOOP
        BEGIN
            PERFORM set_config('lock_timeout', '5s', true);
            EXECUTE format('DROP TABLE %s', part.rel);
            dropped := dropped || part.rel::text;
            PERFORM set_config('lock_timeout', lock_wait, true);
        EXCEPTION WHEN lock_not_available THEN
            RAISE NOTICE 'performance_metrics is busy; % is dropped next time', part.rel;
        END;
    END LOOP;
    RETURN dropped;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- system_health over what the service samples
-- ---------------------------------------------------------------------------------------------
-- (Replaces 0002's version; its columns first, unchanged in name and type, then the system's.)
-- Every minute the service logs, per operation `METHOD /route`: 'request' (unit 'count': requests
-- in the minute), 'error' (unit 'count': 5xx answers, when any), 'latency_p50' / 'latency_p95' /
-- 'latency_p99' (unit 'ms'); and 'system' rows (pool_size, pool_in_use, connections,
-- cache_hit_ratio, database_bytes, dead_tuples, active_tenants, replication_lag_seconds) and
-- 'job_lag' rows (seconds a job is behind its schedule). Rows logged by hand keep the seed's
-- meaning: each 'error' row without unit 'count' is one error, each 'ms' row one latency sample.
-- error_count: errors; avg_latency_ms: mean of the per-operation medians and hand-logged samples;
-- p99_latency_ms: the slowest operation's p99 (or the p99 of hand-logged samples); status
-- 'degraded' when errors exceed 5% of the requests (of the samples, without sampled requests).
CREATE OR REPLACE VIEW system_health WITH (security_invoker = true) AS
SELECT date_trunc('minute', recorded_at) AS "timestamp",
       count(*) AS sample_count,
       coalesce(max(metric_value) FILTER (WHERE metric_type = 'system' AND metric_name = 'active_tenants')::bigint,
                count(DISTINCT tenant_id)) AS active_tenants,
       (count(*) FILTER (WHERE metric_type = 'error' AND metric_unit IS DISTINCT FROM 'count')
        + coalesce(sum(metric_value) FILTER (WHERE metric_type = 'error' AND metric_unit = 'count'), 0))::bigint
           AS error_count,
       avg(metric_value) FILTER (WHERE metric_unit = 'ms' AND metric_type NOT IN ('latency_p95', 'latency_p99'))
           AS avg_latency_ms,
       coalesce(max(metric_value) FILTER (WHERE metric_type = 'latency_p99'),
                percentile_cont(0.99) WITHIN GROUP (ORDER BY metric_value)
                    FILTER (WHERE metric_unit = 'ms' AND metric_type NOT LIKE 'latency\_p%')) AS p99_latency_ms,
       CASE WHEN (count(*) FILTER (WHERE metric_type = 'error' AND metric_unit IS DISTINCT FROM 'count')
                  + coalesce(sum(metric_value) FILTER (WHERE metric_type = 'error' AND metric_unit = 'count'), 0))
                 > 0.05 * coalesce(sum(metric_value) FILTER (WHERE metric_type = 'request' AND metric_unit = 'count'),
                                   count(*))
            THEN 'degraded' ELSE 'healthy' END AS status,
       coalesce(sum(metric_value) FILTER (WHERE metric_type = 'request' AND metric_unit = 'count'), 0)::bigint
           AS request_count,
       max(metric_value) FILTER (WHERE metric_type = 'system' AND metric_name = 'pool_size') AS pool_size,
       max(metric_value) FILTER (WHERE metric_type = 'system' AND metric_name = 'pool_in_use') AS pool_in_use,
       max(metric_value) FILTER (WHERE metric_type = 'system' AND metric_name = 'connections') AS connections,
       min(metric_value) FILTER (WHERE metric_type = 'system' AND metric_name = 'cache_hit_ratio') AS cache_hit_ratio,
       max(metric_value) FILTER (WHERE metric_type = 'system' AND metric_name = 'database_bytes') AS database_bytes,
       max(metric_value) FILTER (WHERE metric_type = 'system' AND metric_name = 'dead_tuples') AS dead_tuples,
       max(metric_value) FILTER (WHERE metric_type = 'job_lag') AS max_job_lag_seconds,
       max(metric_value) FILTER (WHERE metric_type = 'system' AND metric_name = 'replication_lag_seconds')
           AS replication_lag_seconds
FROM performance_metrics
GROUP BY 1;

-- ---------------------------------------------------------------------------------------------
-- Who may call what
-- ---------------------------------------------------------------------------------------------
-- A tenant transaction previews its plan (mnemo_retention_plan, mnemo_retention_due) and restores
-- (mnemo_restore_memory), with its own rights under Row Level Security; cross-tenant runs and
-- partition drops stay with the owner.
REVOKE EXECUTE ON FUNCTION
    mnemo_apply_retention_batch(uuid, text, text, boolean, timestamptz, uuid, integer),
    mnemo_drop_audit_months(integer), mnemo_drop_metric_months(integer)
FROM PUBLIC;
