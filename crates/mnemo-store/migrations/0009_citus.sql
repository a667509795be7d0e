-- Citus compatibility (issue 19). On a distributed or reference table, Citus refuses functions that
-- are not IMMUTABLE in the DO UPDATE clause of an upsert (it evaluates them on the shard); the value
-- now comes from the inserted row instead. Same behaviour on a single PostgreSQL.
-- (Replaces 0003's version.)

-- Recomputes the days (UTC) from the watermark on and moves the watermark to yesterday, so each run
-- reads about two days of audit rows (yesterday stays open for transactions that committed after
-- midnight with an earlier created_at). Earlier days are final: they keep their counts after their
-- audit rows are archived. Returns how many rows it wrote.
CREATE OR REPLACE FUNCTION mnemo_refresh_daily_activity() RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    v_from date;
    n integer;
BEGIN
    PERFORM pg_advisory_xact_lock(727276);
    SELECT value::date INTO v_from FROM mnemo_settings WHERE key = 'tenant_daily_activity_from';
    DELETE FROM tenant_daily_activity WHERE v_from IS NULL OR day >= v_from;
    INSERT INTO tenant_daily_activity (tenant_id, day, action, outcome, operations)
    SELECT tenant_id, (created_at AT TIME ZONE 'UTC')::date, action, outcome, count(*)
    FROM audit_log
    WHERE v_from IS NULL OR created_at >= (v_from::timestamp AT TIME ZONE 'UTC')
    GROUP BY 1, 2, 3, 4;
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO mnemo_settings (key, value, updated_at)
    VALUES ('tenant_daily_activity_from', ((now() AT TIME ZONE 'UTC')::date - 1)::text, now())
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at;
    RETURN n;
END
$$;

-- Citus refuses subqueries in the policies of reference tables; the same condition, asked of a
-- function (SECURITY INVOKER: the caller's Row Level Security applies inside it, as it did to the
-- subquery), behaves the same on one PostgreSQL and works on Citus. (Replaces 0006's policy.)
CREATE FUNCTION mnemo_contributed_to(p_session uuid) RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT EXISTS (SELECT 1 FROM federated_memberships m
                   WHERE m.session_id = p_session AND m.tenant_id = mnemo_current_tenant()
                     AND m.status = 'contributed')
$$;

DROP POLICY contributors_read ON aggregated_insights;
CREATE POLICY contributors_read ON aggregated_insights FOR SELECT
    USING (mnemo_contributed_to(session_id));
GRANT EXECUTE ON FUNCTION mnemo_contributed_to(uuid) TO mnemo_app;

-- Citus runs a function that takes a whole row on each shard, where the row type is the shard's
-- (offloaded_contexts_102119), and fails. The same sum from the columns instead.
CREATE FUNCTION mnemo_context_bytes(p_content bytea, p_summary text, p_metadata jsonb, p_embedding vector)
RETURNS bigint
LANGUAGE sql IMMUTABLE
AS $$
    SELECT coalesce(octet_length(p_content), 0)::bigint
         + coalesce(octet_length(p_summary), 0)
         + octet_length(p_metadata::text)
         + CASE WHEN p_embedding IS NULL THEN 0 ELSE 384 * 4 END
$$;

-- (Replace 0003's versions: the same results, through the function above, and in PL/pgSQL: Citus
-- cannot plan a parameterized SQL function that reads distributed tables.)
CREATE OR REPLACE FUNCTION mnemo_usage_from_rows(p_tenant uuid) RETURNS tenant_usage
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    u tenant_usage;
BEGIN
    SELECT p_tenant, m.n, m.bytes, m.embedded, r.n, r.bytes, c.n, c.bytes INTO u
    FROM (SELECT count(*) AS n, coalesce(sum(content_bytes), 0)::bigint AS bytes, count(embedding) AS embedded
          FROM contextual_memories WHERE tenant_id = p_tenant) AS m,
         (SELECT count(*) AS n, coalesce(sum(octet_length(metadata::text)), 0)::bigint AS bytes
          FROM memory_relationships WHERE tenant_id = p_tenant) AS r,
         (SELECT count(*) AS n, coalesce(sum(mnemo_context_bytes(oc.compressed_content, oc.summary, oc.metadata, oc.embedding)), 0)::bigint AS bytes
          FROM offloaded_contexts oc WHERE tenant_id = p_tenant) AS c;
    RETURN u;
END
$$;

CREATE OR REPLACE FUNCTION get_tenant_memory_usage(p_tenant_id uuid)
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
    newest_memory_at        timestamptz,
    relationship_bytes      bigint,
    context_bytes           bigint,
    quota_bytes             bigint
)
LANGUAGE plpgsql STABLE
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
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
    ),
    r AS (
        SELECT count(*) AS n, coalesce(sum(octet_length(metadata::text)), 0)::bigint AS bytes
        FROM memory_relationships WHERE tenant_id = p_tenant_id
    ),
    c AS (
        SELECT count(*) AS n, coalesce(sum(mnemo_context_bytes(oc.compressed_content, oc.summary, oc.metadata, oc.embedding)), 0)::bigint AS bytes
        FROM offloaded_contexts oc WHERE tenant_id = p_tenant_id
    )
    SELECT p_tenant_id, m.total, m.active, m.expired, m.embedded, m.content_bytes, m.embedding_bytes,
           m.content_bytes + m.embedding_bytes, m.avg_relevance, r.n, c.n,
           t.max_memories, t.max_storage_bytes, m.oldest, m.newest,
           r.bytes, c.bytes, m.content_bytes + m.embedding_bytes + r.bytes + c.bytes
    FROM m CROSS JOIN r CROSS JOIN c
    LEFT JOIN tenants t ON t.id = p_tenant_id;
END
$$;

-- Citus pushes an INSERT … SELECT FROM function(param) down to a worker without the parameter's
-- type; the row is computed first and inserted as values. Same behaviour otherwise.
-- (Replaces 0003's version.)
CREATE OR REPLACE FUNCTION mnemo_usage_add(
    p_tenant uuid, p_memories bigint, p_content_bytes bigint, p_embedded bigint,
    p_relationships bigint, p_relationship_bytes bigint,
    p_contexts bigint DEFAULT 0, p_context_bytes bigint DEFAULT 0
) RETURNS tenant_usage
LANGUAGE plpgsql
AS $$
DECLARE
    u tenant_usage;
    r tenant_usage;
BEGIN
    UPDATE tenant_usage SET
        memories = memories + p_memories, content_bytes = content_bytes + p_content_bytes,
        embedded = embedded + p_embedded, relationships = relationships + p_relationships,
        relationship_bytes = relationship_bytes + p_relationship_bytes,
        contexts = contexts + p_contexts, context_bytes = context_bytes + p_context_bytes
    WHERE tenant_id = p_tenant
    RETURNING * INTO u;
    IF FOUND THEN
        RETURN u;
    END IF;
    r := mnemo_usage_from_rows(p_tenant);
    INSERT INTO tenant_usage AS t
        (tenant_id, memories, content_bytes, embedded, relationships, relationship_bytes, contexts, context_bytes)
    VALUES (p_tenant, r.memories, r.content_bytes, r.embedded, r.relationships, r.relationship_bytes,
            r.contexts, r.context_bytes)
    ON CONFLICT (tenant_id) DO UPDATE SET
        memories = t.memories + p_memories, content_bytes = t.content_bytes + p_content_bytes,
        embedded = t.embedded + p_embedded, relationships = t.relationships + p_relationships,
        relationship_bytes = t.relationship_bytes + p_relationship_bytes,
        contexts = t.contexts + p_contexts, context_bytes = t.context_bytes + p_context_bytes
    RETURNING * INTO u;
    RETURN u;
END
$$;

-- Nothing calls the whole-row version any more.
DROP FUNCTION mnemo_context_bytes(offloaded_contexts);
