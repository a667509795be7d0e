-- Retention and archival that tenants control (issue 17), and expiry/retention cleanup that runs
-- tenant by tenant, so it works on Citus too (issue 19: a multi-shard statement may not lock rows).
-- Taken, revised, from the ops branch's unused draft (00bc08f): every statement that locks rows
-- names one tenant, no function takes a whole row, no now() in an upsert's DO UPDATE.

-- ---------------------------------------------------------------------------------------------
-- Policies: keep the newest N, and which timestamp counts
-- ---------------------------------------------------------------------------------------------
-- basis 'created_at': a memory's age is the time since it was created. 'last_accessed': since it
-- was last used, the later of its last write (updated_at) and its last read by id
-- (last_accessed_at, which GET /v1/memories/{id} records).
-- The audit trail lives in monthly partitions shared by every tenant and is archived and dropped
-- a whole month at a time: a count cannot be honoured there, so only age by creation applies.
ALTER TABLE data_retention_policies
    ADD COLUMN max_count integer CHECK (max_count BETWEEN 1 AND 1000000000),
    ADD COLUMN basis text NOT NULL DEFAULT 'created_at' CHECK (basis IN ('created_at', 'last_accessed')),
    ADD CONSTRAINT data_retention_policies_audit_by_age
        CHECK (resource_type <> 'audit_log' OR (max_count IS NULL AND basis = 'created_at'));

-- Access policies may narrow what keys do with retention policies (scope `retention:*`).
ALTER TABLE tenant_access_policies DROP CONSTRAINT tenant_access_policies_resource_type_check;
ALTER TABLE tenant_access_policies ADD CONSTRAINT tenant_access_policies_resource_type_check
    CHECK (resource_type IN ('memories', 'relationships', 'contexts', 'federated', 'audit', 'usage',
                             'policies', 'retention'));

-- ---------------------------------------------------------------------------------------------
-- Access tracking
-- ---------------------------------------------------------------------------------------------
-- Recording a read (access_count, last_accessed_at) is not an edit: it leaves updated_at alone.
-- (Replaces 0001's trigger.)
DROP TRIGGER contextual_memories_touch ON contextual_memories;
CREATE TRIGGER contextual_memories_touch BEFORE UPDATE ON contextual_memories FOR EACH ROW
    WHEN ((OLD.access_count, OLD.last_accessed_at) IS NOT DISTINCT FROM (NEW.access_count, NEW.last_accessed_at))
    EXECUTE FUNCTION mnemo_touch_updated_at();

-- Retention by last use walks a tenant's memories least recently used first (by creation: the
-- recent_idx index, read backwards).
CREATE INDEX contextual_memories_last_use_idx
    ON contextual_memories (tenant_id, (greatest(updated_at, last_accessed_at)), id);

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
ALTER TABLE memory_relationships_archive ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_relationships_archive FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memory_relationships_archive USING (tenant_id = mnemo_current_tenant())
    WITH CHECK (tenant_id = mnemo_current_tenant());
DO $$ BEGIN
    EXECUTE format('CREATE POLICY owner_maintenance ON memory_relationships_archive TO %I USING (true) WITH CHECK (true)',
                   current_user);
END $$;

-- A tenant request restores its archived memories (and their edges) and, deleting a memory for
-- good, forgets the archived edges that pointed at it.
GRANT SELECT, INSERT, DELETE ON contextual_memories_archive, memory_relationships_archive TO mnemo_app;

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
        RETURNING r.id, r.tenant_id, r.source_memory_id, r.target_memory_id, r.relationship_type,
                  r.weight, r.metadata, r.created_at, octet_length(r.metadata::text)::bigint AS bytes
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
-- A tenant's live (unexpired) memories are ordered by (basis time, id). Its active 'memories'
-- policy, unless 'retain', makes every memory strictly before a bound due:
--   retention_days  the bound (now − days, the smallest id): memories older than that;
--   max_count       the bound (the max_count-th newest memory): all but the newest max_count;
-- both: the later bound. Expired memories are the expiry cleanup's (mnemo_clean_expired_tenant).
-- mnemo_retention_plan() fixes the bound once per run; mnemo_retention_due() lists the due
-- memories oldest first. The preview reads them; a run locks and removes them in batches under
-- the same plan, so both see the same memories.

-- The basis time of a memory, as SQL text.
CREATE FUNCTION mnemo_retention_basis_sql(p_basis text) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$ SELECT CASE p_basis WHEN 'last_accessed' THEN 'greatest(updated_at, last_accessed_at)' ELSE 'created_at' END $$;

-- What the tenant's active 'memories' policy removes now: no row without such a policy, under
-- 'retain', or when it sets no bound; otherwise how (archive or delete), by which basis, and the
-- bound. Reads one tenant's rows only (a router query on Citus).
CREATE FUNCTION mnemo_retention_plan(p_tenant uuid)
RETURNS TABLE (basis text, archive boolean, bound_at timestamptz, bound_id uuid)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    v_basis text;
    v_policy text;
    v_days integer;
    v_max integer;
    v_at timestamptz;
    v_id uuid;
    n_at timestamptz;
    n_id uuid;
BEGIN
    SELECT d.basis, d.archival_policy::text, d.retention_days, d.max_count
    INTO v_basis, v_policy, v_days, v_max
    FROM data_retention_policies d
    WHERE d.tenant_id = p_tenant AND d.resource_type = 'memories' AND d.is_active;
    IF NOT FOUND OR v_policy = 'retain' THEN
        RETURN;
    END IF;
    IF v_days IS NOT NULL THEN
        v_at := now() - make_interval(days => v_days);
        v_id := '00000000-0000-0000-0000-000000000000';
    END IF;
    IF v_max IS NOT NULL THEN
        EXECUTE format('SELECT %1$s, id FROM contextual_memories
                        WHERE tenant_id = $1 AND (expires_at IS NULL OR expires_at > now())
                        ORDER BY %1$s DESC, id DESC OFFSET $2 LIMIT 1', mnemo_retention_basis_sql(v_basis))
            INTO n_at, n_id USING p_tenant, v_max - 1;
        IF n_id IS NOT NULL AND (v_at IS NULL OR (n_at, n_id) > (v_at, v_id)) THEN
            v_at := n_at;
            v_id := n_id;
        END IF;
    END IF;
    IF v_at IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT v_basis, v_policy = 'archive', v_at, v_id;
END
$$;

-- The tenant's memories due under a plan, oldest first, at most p_limit (NULL: all); with p_lock,
-- locked (FOR UPDATE SKIP LOCKED: a memory another transaction holds is left for the next batch,
-- and one changed meanwhile is checked again against the bound).
CREATE FUNCTION mnemo_retention_due(p_tenant uuid, p_basis text, p_bound_at timestamptz, p_bound_id uuid,
                                    p_limit integer, p_lock boolean)
RETURNS TABLE (id uuid, memory_id text)
LANGUAGE plpgsql
AS $$
DECLARE
    at_sql text := mnemo_retention_basis_sql(p_basis);
BEGIN
    IF p_bound_at IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT id, memory_id FROM contextual_memories
         WHERE tenant_id = $1 AND (expires_at IS NULL OR expires_at > now()) AND (%1$s, id) < ($2, $3)
         ORDER BY %1$s, id LIMIT $4 %2$s',
        at_sql, CASE WHEN p_lock THEN 'FOR UPDATE SKIP LOCKED' ELSE '' END)
        USING p_tenant, p_bound_at, p_bound_id, p_limit;
END
$$;

-- One batch of a retention run for one tenant: locks up to p_limit due memories and removes them
-- (archiving when the plan says so) with their edges and what they count in the tenant's usage.
-- Returns the memory_ids removed.
CREATE FUNCTION mnemo_apply_retention_batch(p_tenant uuid, p_basis text, p_archive boolean,
                                            p_bound_at timestamptz, p_bound_id uuid, p_limit integer)
RETURNS TABLE (memory_id text)
LANGUAGE plpgsql
AS $$
DECLARE
    v_ids uuid[];
    v_keys text[];
BEGIN
    SELECT array_agg(d.id ORDER BY d.id), array_agg(d.memory_id ORDER BY d.id) INTO v_ids, v_keys
    FROM mnemo_retention_due(p_tenant, p_basis, p_bound_at, p_bound_id, p_limit, true) AS d;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;
    PERFORM mnemo_remove_and_count(array_fill(p_tenant, ARRAY[cardinality(v_ids)]), v_ids,
                                   array_fill(p_archive, ARRAY[cardinality(v_ids)]));
    RETURN QUERY SELECT unnest(v_keys);
END
$$;

-- One batch of one tenant's expired memories, as its 'memories' policy says ('delete' or none:
-- deleted; 'archive': archived; 'retain': left in place, invisible to reads): up to p_limit,
-- oldest expiry first, skipping rows another transaction holds. Returns how many it removed.
CREATE FUNCTION mnemo_clean_expired_tenant(p_tenant uuid, p_limit integer) RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    v_policy text;
    v_ids uuid[];
BEGIN
    SELECT p.archival_policy::text INTO v_policy FROM data_retention_policies p
    WHERE p.tenant_id = p_tenant AND p.resource_type = 'memories' AND p.is_active;
    IF v_policy = 'retain' THEN
        RETURN 0;
    END IF;
    SELECT array_agg(s.id) INTO v_ids FROM (
        SELECT m.id FROM contextual_memories m
        WHERE m.tenant_id = p_tenant AND m.expires_at <= now()
        ORDER BY m.expires_at, m.id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ) AS s;
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;
    RETURN mnemo_remove_and_count(array_fill(p_tenant, ARRAY[cardinality(v_ids)]), v_ids,
                                  array_fill(coalesce(v_policy, 'delete') = 'archive', ARRAY[cardinality(v_ids)]));
END
$$;

-- The tenants the cleanup visits: those with expired memories, and those whose active 'memories'
-- policy may remove some (a bound, not 'retain'); `archive` says whether their policy archives.
-- Reads without locking (a multi-shard read is fine on Citus).
CREATE FUNCTION mnemo_cleanup_tenants()
RETURNS TABLE (tenant_id uuid, expired boolean, retention boolean, archive boolean)
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    RETURN QUERY
    WITH e AS (
        SELECT DISTINCT m.tenant_id FROM contextual_memories m WHERE m.expires_at <= now()
    ),
    p AS (
        SELECT d.tenant_id, d.archival_policy = 'archive' AS archive,
               d.archival_policy <> 'retain' AND (d.retention_days IS NOT NULL OR d.max_count IS NOT NULL) AS bounded
        FROM data_retention_policies d
        WHERE d.resource_type = 'memories' AND d.is_active
    )
    SELECT coalesce(e.tenant_id, p.tenant_id), e.tenant_id IS NOT NULL, coalesce(p.bounded, false),
           coalesce(p.archive, false)
    FROM e FULL JOIN p ON p.tenant_id = e.tenant_id
    WHERE e.tenant_id IS NOT NULL OR p.bounded
    ORDER BY 1;
END
$$;

-- The seed's maintenance task (replaces 0003's version; same signature and result): every
-- tenant's expired memories, and those due under its retention policy, retired per policy, one
-- tenant at a time in batches of 1,000, so that every statement that locks rows reads one tenant
-- (on Citus: one shard). As one function call it is one transaction; the service runs each batch
-- as a transaction of its own (`Store::clean_expired_memories`).
CREATE OR REPLACE FUNCTION clean_expired_memories() RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    t record;
    pl record;
    n integer;
    total integer := 0;
BEGIN
    FOR t IN SELECT * FROM mnemo_cleanup_tenants() LOOP
        IF t.expired THEN
            LOOP
                n := mnemo_clean_expired_tenant(t.tenant_id, 1000);
                total := total + n;
                EXIT WHEN n < 1000;
            END LOOP;
        END IF;
        IF t.retention THEN
            FOR pl IN SELECT * FROM mnemo_retention_plan(t.tenant_id) LOOP
                LOOP
                    SELECT count(*) INTO n FROM mnemo_apply_retention_batch(
                        t.tenant_id, pl.basis, pl.archive, pl.bound_at, pl.bound_id, 1000);
                    total := total + n;
                    EXIT WHEN n < 1000;
                END LOOP;
            END LOOP;
        END IF;
    END LOOP;
    RETURN total;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Restore
-- ---------------------------------------------------------------------------------------------
-- Brings an archived memory back (the latest archived version of p_memory_id), with the archived
-- edges whose both ends are then live. The caller has made sure no live memory holds the id, and
-- books the returned figures (quotas apply). Runs with the caller's rights: as mnemo_app, only the
-- current tenant's archive. A memory whose expiry passed while archived comes back without one.
-- Plain single-tenant statements (no data-modifying CTE feeding an INSERT), so it routes on Citus.
CREATE FUNCTION mnemo_restore_memory(p_tenant uuid, p_memory_id text)
RETURNS TABLE (id uuid, memories bigint, content_bytes bigint, embedded bigint, relationships bigint,
               relationship_bytes bigint)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    a record;
    v_bytes bigint;
    v_embedded bigint;
    v_edges bigint;
    v_edge_bytes bigint;
BEGIN
    -- Taken out of the archive first: of two concurrent restores, the second finds nothing.
    DELETE FROM contextual_memories_archive x
    WHERE x.tenant_id = p_tenant
      AND x.id = (SELECT y.id FROM contextual_memories_archive y
                  WHERE y.tenant_id = p_tenant AND y.memory_id = p_memory_id
                  ORDER BY y.archived_at DESC, y.id DESC LIMIT 1)
    RETURNING x.id, x.memory_id, x.relevance_score, x.content, x.tags, x.metadata, x.embedding,
              x.embedding_model, x.expires_at, x.created_at, x.access_count, x.last_accessed_at
    INTO a;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    INSERT INTO contextual_memories AS m
        (id, tenant_id, memory_id, relevance_score, content, tags, metadata, embedding, embedding_model,
         expires_at, created_at, access_count, last_accessed_at)
    VALUES (a.id, p_tenant, a.memory_id, a.relevance_score, a.content, a.tags, a.metadata, a.embedding,
            a.embedding_model, CASE WHEN a.expires_at > now() THEN a.expires_at END, a.created_at,
            a.access_count, a.last_accessed_at)
    RETURNING m.content_bytes, (m.embedding IS NOT NULL)::int INTO v_bytes, v_embedded;
    -- An edge of the same (source, target, type) made since wins; the archived one is dropped.
    INSERT INTO memory_relationships
        (id, tenant_id, source_memory_id, target_memory_id, relationship_type, weight, metadata, created_at)
    SELECT r.id, r.tenant_id, r.source_memory_id, r.target_memory_id, r.relationship_type, r.weight,
           r.metadata, r.created_at
    FROM memory_relationships_archive r
    WHERE r.tenant_id = p_tenant AND (r.source_memory_id = a.id OR r.target_memory_id = a.id)
      AND EXISTS (SELECT 1 FROM contextual_memories s WHERE s.tenant_id = p_tenant AND s.id = r.source_memory_id)
      AND EXISTS (SELECT 1 FROM contextual_memories t WHERE t.tenant_id = p_tenant AND t.id = r.target_memory_id)
    ON CONFLICT DO NOTHING;
    SELECT count(*), coalesce(sum(octet_length(r.metadata::text)), 0)::bigint INTO v_edges, v_edge_bytes
    FROM memory_relationships r
    WHERE r.tenant_id = p_tenant AND (r.source_memory_id = a.id OR r.target_memory_id = a.id);
    DELETE FROM memory_relationships_archive r
    WHERE r.tenant_id = p_tenant AND (r.source_memory_id = a.id OR r.target_memory_id = a.id)
      AND EXISTS (SELECT 1 FROM contextual_memories s WHERE s.tenant_id = p_tenant AND s.id = r.source_memory_id)
      AND EXISTS (SELECT 1 FROM contextual_memories t WHERE t.tenant_id = p_tenant AND t.id = r.target_memory_id);
    RETURN QUERY SELECT a.id, 1::bigint, v_bytes, v_embedded, v_edges, v_edge_bytes;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Who may call what
-- ---------------------------------------------------------------------------------------------
-- The cleanup runs across tenants as the owner; tenant requests only preview (plan, due) and
-- restore, confined to their tenant by Row Level Security.
REVOKE EXECUTE ON FUNCTION mnemo_apply_retention_batch(uuid, text, boolean, timestamptz, uuid, integer),
    mnemo_clean_expired_tenant(uuid, integer), mnemo_cleanup_tenants()
FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- The audit trail: whole months dropped from the archive, never single rows
-- ---------------------------------------------------------------------------------------------
-- Months of audit_log move to audit_log_archive whole (mnemo_archive_audit_months, 0003). This
-- drops the archived months (partitions of audit_log_archive) all of whose rows are older than
-- p_days days, except a month holding rows of a tenant whose active audit_log policy says
-- 'archive' or 'retain': it stays until all of it is older than that policy's retention_days
-- (for ever without one). The months are shared by every tenant, so a tenant's policy can keep
-- its trail longer than the operator's setting, never shorter. Returns the partitions dropped.
CREATE FUNCTION mnemo_drop_audit_months(p_days integer) RETURNS text[]
LANGUAGE plpgsql
AS $$
DECLARE
    part record;
    name text;
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
        -- The name, while the table exists (a dropped regclass prints as its number).
        name := part.rel::text;
        EXECUTE format(
            'SELECT EXISTS (SELECT 1 FROM data_retention_policies p
                            WHERE p.resource_type = ''audit_log'' AND p.is_active
                              AND p.archival_policy IN (''archive'', ''retain'')
                              AND (p.retention_days IS NULL OR $1 > now() - make_interval(days => p.retention_days))
                              AND EXISTS (SELECT 1 FROM %s a WHERE a.tenant_id = p.tenant_id))', name)
            INTO held USING part.hi;
        CONTINUE WHEN held;
        BEGIN
            PERFORM set_config('lock_timeout', '5s', true);
            EXECUTE format('DROP TABLE %s', name);
            dropped := dropped || name;
            PERFORM set_config('lock_timeout', lock_wait, true);
        EXCEPTION WHEN lock_not_available THEN
            RAISE NOTICE 'audit_log_archive is busy; % is dropped next time', name;
        END;
    END LOOP;
    RETURN dropped;
END
$$;
REVOKE EXECUTE ON FUNCTION mnemo_drop_audit_months(integer) FROM PUBLIC;
