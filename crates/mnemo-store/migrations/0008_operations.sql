-- Operations (issue 17): the health history the service samples every minute into
-- performance_metrics (through log_performance_metric), read by a system_health view that knows
-- those samples, and whole-partition retention of that history.

-- ---------------------------------------------------------------------------------------------
-- Whole-partition retention of the performance history
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

-- Drops the months of performance_metrics all of whose rows are older than p_days days.
CREATE FUNCTION mnemo_drop_metric_months(p_days integer) RETURNS text[]
LANGUAGE plpgsql
AS $$
DECLARE
    part record;
    name text;
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
            -- The name, while the table exists (a dropped regclass prints as its number).
            name := part.rel::text;
            EXECUTE format('DROP TABLE %s', name);
            dropped := dropped || name;
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
-- Dropping partitions stays with the owner (the maintenance job).
REVOKE EXECUTE ON FUNCTION mnemo_drop_metric_months(integer) FROM PUBLIC;
