-- Context offloading (issue 12): an agent's offloaded LLM context is kept byte-exact and compressed
-- in the seed's `offloaded_contexts`, and cut into retrieval units in `context_chunks` (embedded,
-- full-text indexed), from which prompts are rebuilt within a token budget.

-- ---------------------------------------------------------------------------------------------
-- offloaded_contexts: the seed's columns stay; these describe what the service stores
-- ---------------------------------------------------------------------------------------------
ALTER TABLE offloaded_contexts
    ADD COLUMN payload_kind    text NOT NULL DEFAULT 'messages' CHECK (payload_kind IN ('messages', 'text')),
    ADD COLUMN tokenizer       text NOT NULL DEFAULT 'o200k_base' CHECK (tokenizer IN ('o200k_base', 'cl100k_base')),
    ADD COLUMN message_count   integer NOT NULL DEFAULT 0 CHECK (message_count >= 0),
    ADD COLUMN chunk_count     integer NOT NULL DEFAULT 0 CHECK (chunk_count >= 0),
    ADD COLUMN chunk_bytes     bigint NOT NULL DEFAULT 0 CHECK (chunk_bytes >= 0),
    ADD COLUMN summary_method  text CHECK (length(summary_method) BETWEEN 1 AND 300),
    ADD COLUMN embedding_model text;

COMMENT ON COLUMN offloaded_contexts.compressed_content IS
    'The messages/text JSON exactly as the client sent it, compressed as compression_method says (zstd-<level>[-dict-<id>] or none)';
COMMENT ON COLUMN offloaded_contexts.original_token_count IS
    'Tokens of the whole transcript (role labels and contents) in `tokenizer`';
COMMENT ON COLUMN offloaded_contexts.compressed_token_count IS
    'Tokens of `summary` in `tokenizer`: the context compressed to its gist';
COMMENT ON COLUMN offloaded_contexts.embedding IS 'The embedding of `summary`';
COMMENT ON COLUMN offloaded_contexts.chunk_bytes IS
    'Bytes of the context''s chunks as quotas count them (text plus 1,536 per embedding), written with the chunks';

-- The bytes are zstd output already: PostgreSQL's own TOAST compression (pglz/lz4) would spend
-- time on every write to gain nothing. EXTERNAL keeps them out of line, uncompressed.
ALTER TABLE offloaded_contexts ALTER COLUMN compressed_content SET STORAGE EXTERNAL;

-- Listing walks (tenant, created_at, id) newest first, also within one session; the expiry cleanup
-- walks (expires_at, tenant_id, id) like memories' (0003); metadata containment uses a GIN index.
DROP INDEX offloaded_contexts_recent_idx;
CREATE INDEX offloaded_contexts_recent_idx ON offloaded_contexts (tenant_id, created_at DESC, id DESC);
DROP INDEX offloaded_contexts_session_idx;
CREATE INDEX offloaded_contexts_session_idx ON offloaded_contexts (tenant_id, session_id, created_at DESC, id DESC);
DROP INDEX offloaded_contexts_expiry_idx;
CREATE INDEX offloaded_contexts_expiry_idx ON offloaded_contexts (expires_at, tenant_id, id)
    WHERE expires_at IS NOT NULL;
CREATE INDEX offloaded_contexts_metadata_idx ON offloaded_contexts USING gin (metadata jsonb_path_ops);

-- ---------------------------------------------------------------------------------------------
-- context_chunks: the retrieval units of a context (tenant-owned; Citus rule: every key has tenant_id)
-- ---------------------------------------------------------------------------------------------
CREATE TABLE context_chunks (
    id                   uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id            uuid NOT NULL DEFAULT mnemo_current_tenant() REFERENCES tenants (id) ON DELETE CASCADE,
    offloaded_context_id uuid NOT NULL,
    -- Position among the context's chunks, from 0, in transcript order.
    ordinal              integer NOT NULL CHECK (ordinal >= 0),
    -- First and last message (0-based, inclusive) the chunk reads from.
    first_message        integer NOT NULL CHECK (first_message >= 0),
    last_message         integer NOT NULL,
    -- Character offsets: start in the content of the first message, end (exclusive) in the last's.
    char_start           integer NOT NULL CHECK (char_start >= 0),
    char_end             integer NOT NULL CHECK (char_end >= 0),
    -- Tokens of `text` in the context's tokenizer.
    token_count          integer NOT NULL CHECK (token_count >= 0),
    -- `role: content` lines as the chunker made them (NUL characters, which text cannot hold, as U+FFFD).
    text                 text NOT NULL,
    embedding            vector(384),
    search_tsv           tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, text)) STORED,
    PRIMARY KEY (tenant_id, id),
    -- Also the index that reads a context's chunks in order.
    CONSTRAINT context_chunks_order_key UNIQUE (tenant_id, offloaded_context_id, ordinal),
    FOREIGN KEY (tenant_id, offloaded_context_id) REFERENCES offloaded_contexts (tenant_id, id) ON DELETE CASCADE,
    CHECK (last_message >= first_message),
    CHECK (last_message > first_message OR char_end >= char_start)
);
CREATE INDEX context_chunks_fts_idx ON context_chunks USING gin (search_tsv);
-- Vector search over chunks is exact for small tenants and uses a per-tenant partial HNSW index
-- (`cc_hnsw_<tenant>`, built by the service) for large ones, as for memories.

ALTER TABLE context_chunks ENABLE ROW LEVEL SECURITY;
ALTER TABLE context_chunks FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON context_chunks USING (tenant_id = mnemo_current_tenant())
    WITH CHECK (tenant_id = mnemo_current_tenant());
DO $$ BEGIN
    EXECUTE format('CREATE POLICY owner_maintenance ON context_chunks TO %I USING (true) WITH CHECK (true)', current_user);
END $$;
GRANT SELECT, INSERT, UPDATE, DELETE ON context_chunks TO mnemo_app;

-- ---------------------------------------------------------------------------------------------
-- Quotas: a context's stored bytes now include its chunks' (replaces 0009's version; columns, not
-- the row, for Citus)
-- ---------------------------------------------------------------------------------------------
DROP FUNCTION mnemo_context_bytes(bytea, text, jsonb, vector);
CREATE FUNCTION mnemo_context_bytes(
    p_content bytea, p_summary text, p_metadata jsonb, p_embedding vector, p_chunk_bytes bigint)
RETURNS bigint
LANGUAGE sql IMMUTABLE
AS $$
    SELECT coalesce(octet_length(p_content), 0)::bigint
         + coalesce(octet_length(p_summary), 0)
         + octet_length(p_metadata::text)
         + CASE WHEN p_embedding IS NULL THEN 0 ELSE 384 * 4 END
         + p_chunk_bytes
$$;

-- 0009's usage functions, counting the chunks' bytes through the function above.
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
         (SELECT count(*) AS n, coalesce(sum(mnemo_context_bytes(oc.compressed_content, oc.summary, oc.metadata, oc.embedding, oc.chunk_bytes)), 0)::bigint AS bytes
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
        SELECT count(*) AS n, coalesce(sum(mnemo_context_bytes(oc.compressed_content, oc.summary, oc.metadata, oc.embedding, oc.chunk_bytes)), 0)::bigint AS bytes
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

-- ---------------------------------------------------------------------------------------------
-- GIN indexes under Row Level Security, where the operators cannot be marked LEAKPROOF
-- ---------------------------------------------------------------------------------------------
-- As mnemo_gin_candidates() (0003) does for memories: the ids of the current tenant's rows that
-- match, found through the GIN index as the owner; NULL when more than p_max match (so broad a
-- match is best filtered row by row). The tenant comes from the session, never from an argument.
CREATE FUNCTION mnemo_context_gin_candidates(p_contains jsonb, p_max integer) RETURNS uuid[]
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
    ids uuid[];
BEGIN
    IF mnemo_current_tenant() IS NULL OR p_contains IS NULL THEN
        RETURN '{}';
    END IF;
    SELECT coalesce(array_agg(id), '{}') INTO ids FROM (
        SELECT id FROM offloaded_contexts
        WHERE tenant_id = mnemo_current_tenant() AND metadata @> p_contains
        LIMIT p_max + 1
    ) AS s;
    IF cardinality(ids) > p_max THEN
        RETURN NULL;
    END IF;
    RETURN ids;
END
$$;

CREATE FUNCTION mnemo_chunk_gin_candidates(p_query tsquery, p_max integer) RETURNS uuid[]
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
    ids uuid[];
BEGIN
    IF mnemo_current_tenant() IS NULL OR p_query IS NULL THEN
        RETURN '{}';
    END IF;
    SELECT coalesce(array_agg(id), '{}') INTO ids FROM (
        SELECT id FROM context_chunks
        WHERE tenant_id = mnemo_current_tenant() AND search_tsv @@ p_query
        LIMIT p_max + 1
    ) AS s;
    IF cardinality(ids) > p_max THEN
        RETURN NULL;
    END IF;
    RETURN ids;
END
$$;
REVOKE EXECUTE ON FUNCTION mnemo_context_gin_candidates(jsonb, integer), mnemo_chunk_gin_candidates(tsquery, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mnemo_context_gin_candidates(jsonb, integer), mnemo_chunk_gin_candidates(tsquery, integer) TO mnemo_app;

-- ---------------------------------------------------------------------------------------------
-- Expired contexts: gone for every read, removed with their chunks
-- ---------------------------------------------------------------------------------------------
-- Removes contexts the caller has chosen and locked, with their chunks (the foreign key's cascade),
-- and returns what left per tenant. Counters are the caller's business.
CREATE FUNCTION mnemo_remove_contexts(p_tenants uuid[], p_ids uuid[])
RETURNS TABLE (tenant_id uuid, contexts bigint, context_bytes bigint)
LANGUAGE sql
AS $$
    WITH gone AS (
        DELETE FROM offloaded_contexts c
        USING unnest(p_tenants, p_ids) AS k(tenant_id, id)
        WHERE c.tenant_id = k.tenant_id AND c.id = k.id
        RETURNING c.tenant_id,
            mnemo_context_bytes(c.compressed_content, c.summary, c.metadata, c.embedding, c.chunk_bytes) AS bytes
    )
    SELECT g.tenant_id, count(*), coalesce(sum(g.bytes), 0)::bigint FROM gone g GROUP BY g.tenant_id
$$;

-- Expired contexts of the current tenant, removed so that they are out of the way: before their ids
-- are used again (p_context_ids, waiting for rows another transaction holds) or to make room under a
-- quota (p_context_ids NULL: up to p_limit of them, skipping rows others hold). Returns what left,
-- for the caller to take off its counters.
CREATE FUNCTION mnemo_release_expired_contexts(p_context_ids text[], p_limit integer DEFAULT 1000)
RETURNS TABLE (contexts bigint, context_bytes bigint)
LANGUAGE plpgsql
AS $$
DECLARE
    v_tenant uuid := mnemo_current_tenant();
    v_ids uuid[];
BEGIN
    IF p_context_ids IS NOT NULL THEN
        SELECT array_agg(s.id) INTO v_ids FROM (
            SELECT c.id FROM offloaded_contexts c
            WHERE c.tenant_id = v_tenant AND c.context_id = ANY (p_context_ids) AND c.expires_at <= now()
            ORDER BY c.context_id
            FOR UPDATE
        ) AS s;
    ELSE
        SELECT array_agg(s.id) INTO v_ids FROM (
            SELECT c.id FROM offloaded_contexts c
            WHERE c.tenant_id = v_tenant AND c.expires_at <= now()
            ORDER BY c.expires_at
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        ) AS s;
    END IF;
    IF v_ids IS NULL THEN
        RETURN QUERY SELECT 0::bigint, 0::bigint;
        RETURN;
    END IF;
    RETURN QUERY
    SELECT coalesce(sum(r.contexts), 0)::bigint, coalesce(sum(r.context_bytes), 0)::bigint
    FROM mnemo_remove_contexts(array_fill(v_tenant, ARRAY[cardinality(v_ids)]), v_ids) AS r;
END
$$;

-- One batch of the cleanup of every tenant's expired contexts: the next p_limit entries of the
-- expiry index after the given position (none: from the start), of which those still expired are
-- locked (skipping any another transaction holds: the cleanup never waits, and never removes a
-- context whose expiry a concurrent upsert just moved) and removed with their chunks, and the
-- tenants' counters follow. Returns how many entries it read, how many contexts it removed and
-- where the next batch starts.
CREATE FUNCTION mnemo_clean_expired_contexts_batch(
    p_limit integer, p_after_at timestamptz, p_after_tenant uuid, p_after_id uuid,
    OUT scanned integer, OUT removed integer,
    OUT last_at timestamptz, OUT last_tenant uuid, OUT last_id uuid)
LANGUAGE plpgsql
AS $$
DECLARE
    s_at timestamptz[];
    s_t uuid[];
    s_i uuid[];
    t uuid[];
    i uuid[];
    d record;
BEGIN
    SELECT array_agg(x.expires_at), array_agg(x.tenant_id), array_agg(x.id) INTO s_at, s_t, s_i
    FROM (
        SELECT c.expires_at, c.tenant_id, c.id FROM offloaded_contexts c
        WHERE c.expires_at <= now()
          AND (c.expires_at, c.tenant_id, c.id) >
              (coalesce(p_after_at, '-infinity'),
               coalesce(p_after_tenant, '00000000-0000-0000-0000-000000000000'),
               coalesce(p_after_id, '00000000-0000-0000-0000-000000000000'))
        ORDER BY c.expires_at, c.tenant_id, c.id
        LIMIT p_limit
    ) AS x;
    scanned := coalesce(cardinality(s_i), 0);
    removed := 0;
    IF scanned = 0 THEN
        RETURN;
    END IF;
    last_at := s_at[scanned];
    last_tenant := s_t[scanned];
    last_id := s_i[scanned];
    SELECT array_agg(y.tenant_id), array_agg(y.id) INTO t, i
    FROM (
        SELECT c.tenant_id, c.id
        FROM unnest(s_t, s_i) AS k(tenant_id, id)
        JOIN offloaded_contexts c ON c.tenant_id = k.tenant_id AND c.id = k.id
        WHERE c.expires_at <= now()
        ORDER BY c.tenant_id, c.id
        FOR UPDATE OF c SKIP LOCKED
    ) AS y;
    IF i IS NULL THEN
        RETURN;
    END IF;
    FOR d IN SELECT * FROM mnemo_remove_contexts(t, i) ORDER BY 1 LOOP
        PERFORM mnemo_usage_add(d.tenant_id, 0, 0, 0, 0, 0, -d.contexts, -d.context_bytes);
        removed := removed + d.contexts;
    END LOOP;
END
$$;

-- The companion of the seed's clean_expired_memories(): every tenant's expired contexts, in batches
-- of 1,000 through the expiry index. As one function call it is one transaction; the service runs
-- the batches as transactions of their own (`Store::clean_expired_contexts`).
CREATE FUNCTION clean_expired_contexts() RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    b record;
    at timestamptz;
    t uuid;
    i uuid;
    total integer := 0;
BEGIN
    LOOP
        SELECT * INTO b FROM mnemo_clean_expired_contexts_batch(1000, at, t, i);
        total := total + b.removed;
        EXIT WHEN b.scanned < 1000;
        at := b.last_at;
        t := b.last_tenant;
        i := b.last_id;
    END LOOP;
    RETURN total;
END
$$;

REVOKE EXECUTE ON FUNCTION
    mnemo_clean_expired_contexts_batch(integer, timestamptz, uuid, uuid), clean_expired_contexts()
FROM PUBLIC;
