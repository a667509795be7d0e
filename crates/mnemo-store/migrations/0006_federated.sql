-- Federated learning across the tenants of a project, and sharing rules (issue 13).
--
-- What may leave a tenant is only an aggregate with a stated, accounted privacy cost, or what one of
-- its own sharing rules allows. The pure parts (lifecycle, zCDP accounting, mechanisms, robust
-- aggregation, reputation, redaction) live in mnemo_core::federated; this migration holds the state:
--
--   tenants.privacy_budget_*      each tenant's total budget (ε at δ), set by the administrator
--   federated_participants        registration, the ledger's running sums (ρ, δ), reputation parts
--   federated_sessions            control plane: sessions belong to the initiator's project
--   federated_memberships         tenant-owned: which sessions the tenant joined, how it ended
--   federated_contributions       tenant-owned: the tenant's raw contribution; no other tenant can
--                                 read it; deleted when the session ends
--   federated_privacy_ledger      tenant-owned: one row per release that charged the tenant
--   aggregated_insights           control plane: the releases, readable by their contributors only
--   tenant_sharing_rules          tenant-owned: what another tenant of the project may read
--
-- Cross-tenant steps (counting a session's members, reading its contributions to aggregate them,
-- charging every contributor's ledger, reading what sharing rules expose) go through the SECURITY
-- DEFINER functions below. Each takes the tenant from the session (`app.tenant_id`), never from an
-- argument, checks what that tenant may do, and touches only what the step needs; Row Level
-- Security stays on for mnemo_app everywhere.

-- ---------------------------------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------------------------------

-- ε of ρ-zCDP at δ (Bun–Steinke 2016, Prop. 1.3): the same closed form as
-- mnemo_core::federated::accounting::epsilon_of, so the database can check a charge by itself.
CREATE FUNCTION mnemo_epsilon_of(p_rho double precision, p_delta double precision)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN p_rho <= 0 THEN 0
        WHEN NOT (p_delta > 0 AND p_delta < 1) THEN 'Infinity'::float8
        ELSE p_rho + 2 * sqrt(p_rho * ln(1 / p_delta))
    END
$$;

-- Whether the current tenant may take part in federation and sharing: active and not `strict`.
CREATE FUNCTION mnemo_current_tenant_federates() RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT coalesce((SELECT is_active AND isolation_level <> 'strict' FROM tenants
                     WHERE id = mnemo_current_tenant()), false)
$$;

-- A tenant of the current tenant's project by its public id: its internal id and isolation level.
-- Nothing for a tenant of another project (it looks exactly like one that does not exist).
CREATE FUNCTION mnemo_project_tenant(p_key text)
RETURNS TABLE (id uuid, isolation_level text, is_active boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT t.id, t.isolation_level::text, t.is_active FROM tenants t
    WHERE t.tenant_id = p_key AND t.project_id = mnemo_current_project()
$$;

-- The public id of a tenant of the current tenant's project (NULL for any other).
CREATE FUNCTION mnemo_project_tenant_key(p_id uuid) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT t.tenant_id FROM tenants t WHERE t.id = p_id AND t.project_id = mnemo_current_project()
$$;

-- ---------------------------------------------------------------------------------------------
-- Budgets and participants
-- ---------------------------------------------------------------------------------------------

-- Each tenant's total privacy budget over all its releases: ε at δ (default ε = 10 at δ = 1e-6).
-- The bounds are mnemo_core::federated::accounting::Budget::{MAX_EPSILON, MAX_DELTA}.
ALTER TABLE tenants
    ADD COLUMN privacy_budget_epsilon double precision NOT NULL DEFAULT 10
        CHECK (privacy_budget_epsilon > 0 AND privacy_budget_epsilon <= 100),
    ADD COLUMN privacy_budget_delta double precision NOT NULL DEFAULT 1e-6
        CHECK (privacy_budget_delta > 0 AND privacy_budget_delta <= 1e-3);

-- The ledger's running sums (zCDP ρ and the additive δ of threshold mechanisms) and the parts of
-- the reputation (mnemo_core::federated::reputation). `privacy_budget_used` (the seed's column)
-- holds the ε those sums convert to at the tenant's budget δ.
ALTER TABLE federated_participants
    ADD COLUMN rho_spent double precision NOT NULL DEFAULT 0 CHECK (rho_spent >= 0),
    ADD COLUMN delta_spent double precision NOT NULL DEFAULT 0 CHECK (delta_spent >= 0),
    ADD COLUMN agreement_ema double precision NOT NULL DEFAULT 0.5 CHECK (agreement_ema BETWEEN 0 AND 1),
    ADD COLUMN sessions_completed integer NOT NULL DEFAULT 0 CHECK (sessions_completed >= 0),
    ADD COLUMN sessions_abandoned integer NOT NULL DEFAULT 0 CHECK (sessions_abandoned >= 0);

-- The ledger only grows: no role, not even the owner, can give budget back by lowering the sums.
CREATE FUNCTION mnemo_participant_ledger_grows() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF NEW.rho_spent < OLD.rho_spent OR NEW.delta_spent < OLD.delta_spent THEN
        RAISE EXCEPTION 'a privacy ledger never shrinks (ρ % → %, δ % → %)',
            OLD.rho_spent, NEW.rho_spent, OLD.delta_spent, NEW.delta_spent
            USING ERRCODE = 'restrict_violation', CONSTRAINT = 'federated_participants_ledger_grows';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER federated_participants_ledger BEFORE UPDATE ON federated_participants
    FOR EACH ROW EXECUTE FUNCTION mnemo_participant_ledger_grows();

-- A tenant registers and withdraws (is_active) and its own leaving updates its reputation; the
-- ledger is written only by mnemo_fed_settle. Deleting the row would reset the ledger: no DELETE.
REVOKE UPDATE, DELETE ON federated_participants FROM mnemo_app;
GRANT UPDATE (privacy_level, is_active, last_active_at, reputation_score, sessions_abandoned)
    ON federated_participants TO mnemo_app;

-- ---------------------------------------------------------------------------------------------
-- Sessions
-- ---------------------------------------------------------------------------------------------

ALTER TABLE federated_sessions
    ADD COLUMN project_id uuid REFERENCES projects (id) ON DELETE CASCADE,
    -- What participants contribute from: {query?, tags?, filter?, max_memories, min_similarity,
    -- label_fields, lesson_fields}; the query's embedding is computed once, at creation.
    ADD COLUMN topic_spec jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(topic_spec) = 'object'),
    ADD COLUMN topic_embedding vector(384),
    ADD COLUMN privacy_delta double precision NOT NULL DEFAULT 1e-8
        CHECK (privacy_delta > 0 AND privacy_delta <= 1e-5),
    -- What each contributor's ledger is charged (SessionPlan::charge); NULL at `basic`.
    ADD COLUMN plan_rho double precision CHECK (plan_rho > 0),
    ADD COLUMN plan_delta double precision CHECK (plan_delta > 0),
    -- The aggregation rule's parameters and the release's options (trim, β, f, secure k, redaction).
    ADD COLUMN rule jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(rule) = 'object'),
    ADD COLUMN deadline timestamptz NOT NULL DEFAULT now() + interval '1 day',
    ADD COLUMN participant_count integer NOT NULL DEFAULT 0 CHECK (participant_count >= 0),
    ADD COLUMN failure_reason text CHECK (failure_reason IN
        ('cancelled', 'too_few_participants', 'deadline_passed', 'budget_exhausted', 'aggregation_refused'));
-- Sessions written before this migration: brought within the new terms before they are checked.
UPDATE federated_sessions SET failure_reason = 'cancelled' WHERE status = 'failed';
UPDATE federated_sessions SET min_participants = 2 WHERE min_participants < 2;
UPDATE federated_sessions SET privacy_epsilon = 10 WHERE privacy_epsilon > 10;
ALTER TABLE federated_sessions
    ADD CONSTRAINT federated_sessions_epsilon_bound CHECK (privacy_epsilon <= 10),
    ADD CONSTRAINT federated_sessions_min_participants CHECK (min_participants >= 2),
    ADD CONSTRAINT federated_sessions_plan CHECK ((plan_rho IS NULL) = (plan_delta IS NULL)),
    ADD CONSTRAINT federated_sessions_failure_reason CHECK ((status = 'failed') = (failure_reason IS NOT NULL));
ALTER TABLE federated_sessions ALTER COLUMN min_participants SET DEFAULT 3;

-- A session belongs to its initiator's project.
UPDATE federated_sessions s SET project_id = t.project_id FROM tenants t WHERE t.id = s.initiator_tenant_id;
ALTER TABLE federated_sessions ALTER COLUMN project_id SET NOT NULL;

CREATE FUNCTION mnemo_session_project() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    NEW.project_id := mnemo_tenant_project(NEW.initiator_tenant_id);
    RETURN NEW;
END
$$;
CREATE TRIGGER federated_sessions_project BEFORE INSERT ON federated_sessions
    FOR EACH ROW EXECUTE FUNCTION mnemo_session_project();

-- session_id is the client's name of a session, unique within the project (a global key would let
-- one project find out the names another project uses).
ALTER TABLE federated_sessions DROP CONSTRAINT federated_sessions_session_id_key;
ALTER TABLE federated_sessions ADD CONSTRAINT federated_sessions_project_session_key UNIQUE (project_id, session_id);
CREATE INDEX federated_sessions_project_recent_idx ON federated_sessions (project_id, created_at DESC, id DESC);
-- The deadline job walks open sessions by deadline.
CREATE INDEX federated_sessions_open_deadline_idx ON federated_sessions (deadline)
    WHERE status IN ('forming', 'active');

-- The status changes the lifecycle allows: exactly mnemo_core::federated::lifecycle::
-- LEGAL_STATUS_CHANGES (a test compares the two).
CREATE FUNCTION mnemo_session_status_changes()
RETURNS TABLE (from_status session_status, to_status session_status)
LANGUAGE sql IMMUTABLE
AS $$
    VALUES ('forming'::session_status, 'active'::session_status),
           ('forming', 'failed'),
           ('active', 'forming'),
           ('active', 'aggregating'),
           ('active', 'failed'),
           ('aggregating', 'completed'),
           ('aggregating', 'failed')
$$;

-- The lifecycle, enforced for every role: a session starts `forming`, changes status only along
-- mnemo_session_status_changes(), and keeps the terms participants joined under. Refusals are
-- restrict_violation with the constraint's name, which the service answers with 409.
CREATE FUNCTION mnemo_session_lifecycle() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status <> 'forming' THEN
            RAISE EXCEPTION 'a session starts forming, not %', NEW.status
                USING ERRCODE = 'restrict_violation', CONSTRAINT = 'federated_sessions_status_transition';
        END IF;
        RETURN NEW;
    END IF;
    IF (NEW.session_id, NEW.project_id, NEW.initiator_tenant_id, NEW.topic_spec, NEW.topic_embedding,
        NEW.aggregation_method, NEW.privacy_level, NEW.privacy_epsilon, NEW.privacy_delta, NEW.plan_rho,
        NEW.plan_delta, NEW.rule, NEW.min_participants, NEW.max_participants)
       IS DISTINCT FROM
       (OLD.session_id, OLD.project_id, OLD.initiator_tenant_id, OLD.topic_spec, OLD.topic_embedding,
        OLD.aggregation_method, OLD.privacy_level, OLD.privacy_epsilon, OLD.privacy_delta, OLD.plan_rho,
        OLD.plan_delta, OLD.rule, OLD.min_participants, OLD.max_participants) THEN
        RAISE EXCEPTION 'the terms of a session cannot change after it is created'
            USING ERRCODE = 'restrict_violation', CONSTRAINT = 'federated_sessions_terms';
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status THEN
        IF NOT EXISTS (SELECT 1 FROM mnemo_session_status_changes() c
                       WHERE c.from_status = OLD.status AND c.to_status = NEW.status) THEN
            RAISE EXCEPTION 'illegal session status change: % → %', OLD.status, NEW.status
                USING ERRCODE = 'restrict_violation', CONSTRAINT = 'federated_sessions_status_transition';
        END IF;
        IF NEW.status = 'active' THEN
            NEW.started_at := coalesce(OLD.started_at, now());
        ELSIF NEW.status IN ('completed', 'failed') THEN
            NEW.completed_at := now();
        END IF;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER federated_sessions_lifecycle BEFORE INSERT OR UPDATE ON federated_sessions
    FOR EACH ROW EXECUTE FUNCTION mnemo_session_lifecycle();

-- Sessions are seen by the tenants of their project, created by a tenant for its own project, and
-- changed (cancelled, aggregated) only by their initiator.
DROP POLICY project_members_read ON federated_sessions;
DROP POLICY initiator_insert ON federated_sessions;
DROP POLICY initiator_update ON federated_sessions;
CREATE POLICY project_members_read ON federated_sessions FOR SELECT
    USING (project_id = mnemo_current_project());
CREATE POLICY initiator_insert ON federated_sessions FOR INSERT
    WITH CHECK (initiator_tenant_id = mnemo_current_tenant() AND project_id = mnemo_current_project());
CREATE POLICY initiator_update ON federated_sessions FOR UPDATE
    USING (initiator_tenant_id = mnemo_current_tenant())
    WITH CHECK (initiator_tenant_id = mnemo_current_tenant() AND project_id = mnemo_current_project());

-- ---------------------------------------------------------------------------------------------
-- Memberships, contributions, the ledger's history (tenant-owned)
-- ---------------------------------------------------------------------------------------------

-- A tenant's part in a session: `joined`, then `contributed` (charged, in the release; with the
-- agreement its reputation took), `excluded` (with the reason, e.g. its budget could not pay),
-- `left` (it abandoned the session) or `ended` (the session failed or was cancelled).
CREATE TABLE federated_memberships (
    tenant_id  uuid NOT NULL DEFAULT mnemo_current_tenant() REFERENCES tenants (id) ON DELETE CASCADE,
    session_id uuid NOT NULL REFERENCES federated_sessions (id) ON DELETE CASCADE,
    status     text NOT NULL DEFAULT 'joined'
               CHECK (status IN ('joined', 'contributed', 'excluded', 'left', 'ended')),
    reason     text CHECK (length(reason) <= 1000),
    agreement  double precision CHECK (agreement BETWEEN 0 AND 1),
    joined_at  timestamptz NOT NULL DEFAULT now(),
    ended_at   timestamptz,
    PRIMARY KEY (tenant_id, session_id)
);
CREATE INDEX federated_memberships_session_idx ON federated_memberships (session_id, status);
CREATE INDEX federated_memberships_recent_idx ON federated_memberships (tenant_id, joined_at DESC);

-- A tenant's contribution, computed inside its own transaction from its own memories matching the
-- topic: the centroid of their embeddings, how many there were, and the label and lesson
-- frequencies ([[field, value, count]], [[text, count]]) that the release bounds per tenant.
CREATE TABLE federated_contributions (
    tenant_id    uuid NOT NULL DEFAULT mnemo_current_tenant() REFERENCES tenants (id) ON DELETE CASCADE,
    session_id   uuid NOT NULL,
    centroid     double precision[] NOT NULL CHECK (cardinality(centroid) = 384),
    memory_count integer NOT NULL CHECK (memory_count > 0),
    labels       jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(labels) = 'array'),
    lessons      jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(lessons) = 'array'),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, session_id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES federated_memberships (tenant_id, session_id) ON DELETE CASCADE
);
CREATE INDEX federated_contributions_session_idx ON federated_contributions (session_id);

-- One row per release that charged the tenant: what it cost and where the sums stood after it.
-- No foreign key to the session: the history outlives it.
CREATE TABLE federated_privacy_ledger (
    id                  uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL DEFAULT mnemo_current_tenant() REFERENCES tenants (id) ON DELETE CASCADE,
    session_id          uuid NOT NULL,
    session_key         text NOT NULL,
    insight_id          uuid,
    rho                 double precision NOT NULL CHECK (rho >= 0),
    delta               double precision NOT NULL CHECK (delta >= 0),
    session_epsilon     double precision NOT NULL,
    session_delta       double precision NOT NULL,
    rho_after           double precision NOT NULL,
    delta_after         double precision NOT NULL,
    epsilon_spent_after double precision NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX federated_privacy_ledger_recent_idx ON federated_privacy_ledger (tenant_id, created_at DESC);

DO $$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['federated_memberships', 'federated_contributions', 'federated_privacy_ledger'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', tbl);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', tbl);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = mnemo_current_tenant()) '
                       'WITH CHECK (tenant_id = mnemo_current_tenant())', tbl);
        EXECUTE format('CREATE POLICY owner_maintenance ON %I TO %I USING (true) WITH CHECK (true)',
                       tbl, current_user);
    END LOOP;
END
$$;
-- A tenant joins (its membership and contribution) and leaves (updates its membership, deletes its
-- contribution). Everything else about them is the SECURITY DEFINER functions' business.
GRANT SELECT, INSERT ON federated_memberships TO mnemo_app;
GRANT UPDATE (status, reason, ended_at) ON federated_memberships TO mnemo_app;
GRANT SELECT, INSERT, DELETE ON federated_contributions TO mnemo_app;
GRANT SELECT ON federated_privacy_ledger TO mnemo_app;

-- ---------------------------------------------------------------------------------------------
-- Insights
-- ---------------------------------------------------------------------------------------------

ALTER TABLE aggregated_insights
    ADD COLUMN method aggregation_method,
    ADD COLUMN privacy_level privacy_level,
    ADD COLUMN epsilon double precision CHECK (epsilon > 0),
    ADD COLUMN delta double precision CHECK (delta > 0),
    ADD COLUMN rho double precision CHECK (rho > 0),
    -- σ of the Gaussian noise on each coordinate of the centroid, and σ·√d: the expected L2 error
    -- the noise adds to it.
    ADD COLUMN noise_scale double precision CHECK (noise_scale >= 0),
    ADD COLUMN expected_error double precision CHECK (expected_error >= 0),
    ADD COLUMN sensitivity jsonb,
    ADD COLUMN excluded_count integer NOT NULL DEFAULT 0 CHECK (excluded_count >= 0);

-- Readable by the tenants whose contribution is in it, and by nobody else (not even the tenants of
-- the project that did not take part). Only mnemo_fed_settle writes them.
DROP POLICY session_visible_read ON aggregated_insights;
DROP POLICY initiator_insert ON aggregated_insights;
CREATE POLICY contributors_read ON aggregated_insights FOR SELECT
    USING (EXISTS (SELECT 1 FROM federated_memberships m
                   WHERE m.session_id = aggregated_insights.session_id
                     AND m.tenant_id = mnemo_current_tenant() AND m.status = 'contributed'));
REVOKE INSERT, UPDATE ON aggregated_insights FROM mnemo_app;

-- ---------------------------------------------------------------------------------------------
-- The privileged steps of a session
-- ---------------------------------------------------------------------------------------------

-- Locks a session of the current tenant's project (so joins, leaves and the aggregation of one
-- session take turns) and returns it; nothing for a session of another project.
CREATE FUNCTION mnemo_fed_lock_session(p_session uuid) RETURNS SETOF federated_sessions
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT * FROM federated_sessions
    WHERE id = p_session AND project_id = mnemo_current_project() AND mnemo_current_tenant_federates()
    FOR UPDATE
$$;

-- After the current tenant joined or left: recounts the joined members and moves the session between
-- forming and active as the count says (forming at min_participants becomes active, active below
-- it forms again: the lifecycle's Activate and Deactivate, which the service checks against
-- mnemo_core). Returns the count and the status before and after.
CREATE FUNCTION mnemo_fed_members_changed(p_session uuid)
RETURNS TABLE (members integer, old_status text, new_status text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
    s federated_sessions;
    n integer;
    v_status session_status;
BEGIN
    SELECT * INTO s FROM federated_sessions
    WHERE id = p_session AND project_id = mnemo_current_project() AND mnemo_current_tenant_federates()
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'session not found' USING ERRCODE = 'no_data_found';
    END IF;
    IF s.status NOT IN ('forming', 'active') THEN
        RAISE EXCEPTION 'members change only while a session is forming or active, not %', s.status
            USING ERRCODE = 'restrict_violation', CONSTRAINT = 'federated_sessions_status_transition';
    END IF;
    SELECT count(*) INTO n FROM federated_memberships m WHERE m.session_id = p_session AND m.status = 'joined';
    v_status := CASE WHEN s.status = 'forming' AND n >= s.min_participants THEN 'active'
                     WHEN s.status = 'active' AND n < s.min_participants THEN 'forming'
                     ELSE s.status END;
    UPDATE federated_sessions SET participant_count = n, status = v_status WHERE id = p_session;
    RETURN QUERY SELECT n, s.status::text, v_status::text;
END
$$;

-- Everything the aggregation of a session needs, for its initiator only and only while it is
-- aggregating: per joined member (in tenant order, its participant row locked so that concurrent
-- sessions charge a ledger one after the other), its budget, ledger, reputation parts and
-- contribution. The member ids stay inside the service; no answer carries them.
CREATE FUNCTION mnemo_fed_aggregation_inputs(p_session uuid)
RETURNS TABLE (member uuid, federates boolean, participant_active boolean, participant_level text,
               budget_epsilon double precision, budget_delta double precision,
               rho_spent double precision, delta_spent double precision,
               agreement_ema double precision, sessions_completed integer, sessions_abandoned integer,
               centroid double precision[], memory_count integer, labels jsonb, lessons jsonb)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM federated_sessions s
                   WHERE s.id = p_session AND s.initiator_tenant_id = mnemo_current_tenant()
                     AND s.status = 'aggregating') THEN
        RAISE EXCEPTION 'only the initiator reads the contributions, while the session is aggregating'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN QUERY
    SELECT m.tenant_id, t.is_active AND t.isolation_level <> 'strict', p.is_active, p.privacy_level::text,
           t.privacy_budget_epsilon, t.privacy_budget_delta, p.rho_spent, p.delta_spent,
           p.agreement_ema, p.sessions_completed, p.sessions_abandoned,
           c.centroid, c.memory_count, c.labels, c.lessons
    FROM federated_memberships m
    JOIN federated_contributions c ON c.tenant_id = m.tenant_id AND c.session_id = m.session_id
    JOIN federated_participants p ON p.tenant_id = m.tenant_id
    JOIN tenants t ON t.id = m.tenant_id
    WHERE m.session_id = p_session AND m.status = 'joined'
    ORDER BY m.tenant_id
    FOR UPDATE OF p;
END
$$;

-- Ends a session (owner only: the deadline job, and the functions below): joined members end with
-- the failure reason, every contribution is deleted, the status moves (the lifecycle trigger
-- checks the change).
CREATE FUNCTION mnemo_fed_end(p_session uuid, p_status session_status, p_reason text) RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE federated_memberships SET status = 'ended', reason = p_reason, ended_at = now()
    WHERE session_id = p_session AND status = 'joined';
    DELETE FROM federated_contributions WHERE session_id = p_session;
    UPDATE federated_sessions
    SET status = p_status, failure_reason = CASE WHEN p_status = 'failed' THEN p_reason END,
        participant_count = (SELECT count(*) FROM federated_memberships
                             WHERE session_id = p_session AND status IN ('joined', 'contributed'))
    WHERE id = p_session;
END
$$;

-- The initiator fails its session: cancelled (forming or active) or refused at aggregation
-- (aggregating), with the members excluded on the way and their reasons.
CREATE FUNCTION mnemo_fed_fail(p_session uuid, p_reason text, p_excluded uuid[], p_excluded_reasons text[])
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
BEGIN
    PERFORM 1 FROM federated_sessions s
    WHERE s.id = p_session AND s.initiator_tenant_id = mnemo_current_tenant()
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'only the initiator ends a session' USING ERRCODE = 'insufficient_privilege';
    END IF;
    UPDATE federated_memberships m SET status = 'excluded', reason = x.reason, ended_at = now()
    FROM unnest(p_excluded, p_excluded_reasons) AS x(tenant, reason)
    WHERE m.session_id = p_session AND m.tenant_id = x.tenant AND m.status = 'joined';
    PERFORM mnemo_fed_end(p_session, 'failed', p_reason);
END
$$;

-- The release of a session, in the initiator's aggregation transaction: charges every contributor
-- the session's (ρ, δ) after checking, here too, that the charge fits its budget (ε of the new sums
-- at the budget's δ less the additive δ); writes the ledger rows, the contributors' reputations and
-- memberships, the excluded members' reasons and the insight; deletes every contribution; completes
-- the session. Returns the insight's id.
CREATE FUNCTION mnemo_fed_settle(
    p_session uuid, p_insight jsonb, p_confidence double precision, p_noise_scale double precision,
    p_expected_error double precision, p_sensitivity jsonb,
    p_contributors uuid[], p_agreements double precision[], p_agreement_ema double precision[],
    p_reputation double precision[], p_excluded uuid[], p_excluded_reasons text[])
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
    s federated_sessions;
    v_insight uuid;
    c record;
    p federated_participants;
    v_budget_eps double precision;
    v_budget_delta double precision;
    v_eps double precision;
BEGIN
    SELECT * INTO s FROM federated_sessions
    WHERE id = p_session AND initiator_tenant_id = mnemo_current_tenant() AND status = 'aggregating'
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'only the initiator settles a session, while it is aggregating'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF coalesce(cardinality(p_contributors), 0) < s.min_participants
       OR cardinality(p_contributors) <> cardinality(p_agreements)
       OR cardinality(p_contributors) <> cardinality(p_agreement_ema)
       OR cardinality(p_contributors) <> cardinality(p_reputation) THEN
        RAISE EXCEPTION 'a release needs % contributors with one agreement and reputation each', s.min_participants
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO aggregated_insights
        (session_id, insight_type, content, confidence_score, participant_count, privacy_budget_used,
         method, privacy_level, epsilon, delta, rho, noise_scale, expected_error, sensitivity, excluded_count)
    VALUES (p_session, 'topic_aggregate', p_insight, p_confidence, cardinality(p_contributors),
            CASE WHEN s.plan_rho IS NULL THEN 0 ELSE s.privacy_epsilon END,
            s.aggregation_method, s.privacy_level,
            CASE WHEN s.plan_rho IS NOT NULL THEN s.privacy_epsilon END,
            CASE WHEN s.plan_rho IS NOT NULL THEN s.privacy_delta END,
            s.plan_rho, p_noise_scale, p_expected_error, p_sensitivity, coalesce(cardinality(p_excluded), 0))
    RETURNING id INTO v_insight;
    FOR c IN SELECT * FROM unnest(p_contributors, p_agreements, p_agreement_ema, p_reputation)
                 AS x(tenant, agreement, ema, reputation)
             ORDER BY tenant
    LOOP
        UPDATE federated_memberships SET status = 'contributed', agreement = c.agreement, ended_at = now()
        WHERE session_id = p_session AND tenant_id = c.tenant AND status = 'joined';
        IF NOT FOUND THEN
            RAISE EXCEPTION 'a contributor is not a joined member of the session'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        SELECT t.privacy_budget_epsilon, t.privacy_budget_delta INTO v_budget_eps, v_budget_delta
        FROM tenants t WHERE t.id = c.tenant;
        UPDATE federated_participants SET
            rho_spent = rho_spent + coalesce(s.plan_rho, 0),
            delta_spent = delta_spent + coalesce(s.plan_delta, 0),
            contributions_count = contributions_count + 1,
            sessions_completed = sessions_completed + 1,
            agreement_ema = c.ema,
            reputation_score = c.reputation,
            last_active_at = now()
        WHERE tenant_id = c.tenant
        RETURNING * INTO p;
        v_eps := CASE WHEN p.rho_spent = 0 AND p.delta_spent = 0 THEN 0
                      WHEN p.delta_spent >= v_budget_delta THEN 'Infinity'::float8
                      ELSE mnemo_epsilon_of(p.rho_spent, v_budget_delta - p.delta_spent) END;
        IF v_eps > v_budget_eps * (1 + 1e-12) THEN
            RAISE EXCEPTION 'the charge exceeds a contributor''s privacy budget (ε % of %)', v_eps, v_budget_eps
                USING ERRCODE = 'restrict_violation', CONSTRAINT = 'federated_budget_exceeded';
        END IF;
        UPDATE federated_participants SET privacy_budget_used = v_eps WHERE tenant_id = c.tenant;
        IF s.plan_rho IS NOT NULL THEN
            INSERT INTO federated_privacy_ledger
                (tenant_id, session_id, session_key, insight_id, rho, delta, session_epsilon, session_delta,
                 rho_after, delta_after, epsilon_spent_after)
            VALUES (c.tenant, p_session, s.session_id, v_insight, s.plan_rho, s.plan_delta, s.privacy_epsilon,
                    s.privacy_delta, p.rho_spent, p.delta_spent, v_eps);
        END IF;
    END LOOP;
    UPDATE federated_memberships m SET status = 'excluded', reason = x.reason, ended_at = now()
    FROM unnest(p_excluded, p_excluded_reasons) AS x(tenant, reason)
    WHERE m.session_id = p_session AND m.tenant_id = x.tenant AND m.status = 'joined';
    PERFORM mnemo_fed_end(p_session, 'completed', NULL);
    RETURN v_insight;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Sharing rules
-- ---------------------------------------------------------------------------------------------

-- A rule's target is one tenant of the owner's project, or (NULL) every tenant of it. One rule per
-- owner, target and resource type, the project-wide one included.
ALTER TABLE tenant_sharing_rules ALTER COLUMN target_tenant_id DROP NOT NULL;
DO $$
DECLARE
    con text;
BEGIN
    -- The seed's UNIQUE (tenant_id, target_tenant_id, resource_type), under its generated name.
    FOR con IN SELECT conname FROM pg_constraint
               WHERE conrelid = 'tenant_sharing_rules'::regclass AND contype = 'u' LOOP
        EXECUTE format('ALTER TABLE tenant_sharing_rules DROP CONSTRAINT %I', con);
    END LOOP;
END
$$;
ALTER TABLE tenant_sharing_rules ADD CONSTRAINT tenant_sharing_rules_target_key
    UNIQUE NULLS NOT DISTINCT (tenant_id, target_tenant_id, resource_type);
ALTER TABLE tenant_sharing_rules
    -- A mnemo_core::federated::redact::RedactionProfile applied to what the rule exposes.
    ADD COLUMN anonymization jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(anonymization) = 'object'),
    -- Whether readers see the owner's public tenant id on what the rule exposes.
    ADD COLUMN reveal_source boolean NOT NULL DEFAULT false;
CREATE INDEX tenant_sharing_rules_project_wide_idx ON tenant_sharing_rules (tenant_id)
    WHERE target_tenant_id IS NULL;

-- What the sharing rules of other tenants let the current tenant read, for a search: the memories
-- of each active, unexpired rule that targets the current tenant (or every tenant of its project),
-- whose owner is an active, non-strict tenant of the same project, matching the rule's conditions
-- and the search's filter; the `p_k` nearest to `p_vector` and the `p_k` best text matches of
-- `p_words` (websearch syntax). A memory two rules expose comes once, through the rule naming the
-- reader. Each hit carries a handle (a hash of the rule and the memory, never the owner's ids) and
-- the owner's public tenant id only where the rule reveals it. Every owner whose memories are
-- returned gets an audit row (`sharing.read`, naming the reader) in the same transaction.
-- Revoking, deactivating or expiring a rule takes effect on the next call: nothing is cached.
CREATE FUNCTION mnemo_shared_memories(
    p_vector vector, p_words text, p_k integer,
    p_contains jsonb, p_tags_all text[], p_tags_any text[],
    p_min_relevance double precision, p_max_relevance double precision,
    p_created_after timestamptz, p_created_before timestamptz, p_request_id text)
RETURNS TABLE (rule_id uuid, source_tenant text, handle uuid, content jsonb, tags text[], metadata jsonb,
               relevance_score double precision, has_embedding boolean, embedding_model text,
               expires_at timestamptz, created_at timestamptz, updated_at timestamptz,
               distance double precision, text_rank double precision, anonymization jsonb)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_reader uuid := mnemo_current_tenant();
    v_reader_key text;
    v_project uuid;
    v_query tsquery;
BEGIN
    SELECT t.tenant_id, t.project_id INTO v_reader_key, v_project FROM tenants t
    WHERE t.id = v_reader AND t.is_active AND t.isolation_level <> 'strict';
    IF NOT FOUND THEN
        RETURN;
    END IF;
    p_k := least(greatest(coalesce(p_k, 10), 1), 200);
    IF p_words IS NOT NULL THEN
        v_query := websearch_to_tsquery('english', p_words);
    END IF;
    RETURN QUERY
    WITH rules AS (
        SELECT r.id, r.tenant_id AS owner, o.tenant_id AS owner_key, r.reveal_source, r.anonymization,
               r.target_tenant_id IS NOT NULL AS direct,
               CASE WHEN r.conditions ? 'tags'
                    THEN ARRAY(SELECT jsonb_array_elements_text(r.conditions->'tags')) END AS c_tags,
               CASE WHEN r.conditions ? 'any_tags'
                    THEN ARRAY(SELECT jsonb_array_elements_text(r.conditions->'any_tags')) END AS c_any,
               r.conditions->'contains' AS c_contains
        FROM tenant_sharing_rules r
        JOIN tenants o ON o.id = r.tenant_id
        WHERE (r.target_tenant_id = v_reader OR r.target_tenant_id IS NULL)
          AND r.tenant_id <> v_reader AND r.is_active AND r.resource_type = 'memories'
          AND 'read' = ANY (r.permissions) AND (r.expires_at IS NULL OR r.expires_at > now())
          AND o.project_id = v_project AND o.is_active AND o.isolation_level <> 'strict'
        ORDER BY r.target_tenant_id IS NOT NULL DESC, r.created_at, r.id
        LIMIT 100
    ),
    candidates AS (
        SELECT rl.id AS rule, rl.direct, m.tenant_id AS owner, m.id AS memory,
               m.embedding <=> p_vector AS dist, NULL::float8 AS rank
        FROM rules rl
        CROSS JOIN LATERAL (
            SELECT m.tenant_id, m.id, m.embedding FROM contextual_memories m
            WHERE p_vector IS NOT NULL AND m.tenant_id = rl.owner AND m.embedding IS NOT NULL
              AND (m.expires_at IS NULL OR m.expires_at > now())
              AND (rl.c_tags IS NULL OR m.tags @> rl.c_tags)
              AND (rl.c_any IS NULL OR m.tags && rl.c_any)
              AND (rl.c_contains IS NULL OR m.content @> rl.c_contains)
              AND (p_contains IS NULL OR m.content @> p_contains)
              AND (p_tags_all IS NULL OR m.tags @> p_tags_all)
              AND (p_tags_any IS NULL OR m.tags && p_tags_any)
              AND (p_min_relevance IS NULL OR m.relevance_score >= p_min_relevance)
              AND (p_max_relevance IS NULL OR m.relevance_score <= p_max_relevance)
              AND (p_created_after IS NULL OR m.created_at >= p_created_after)
              AND (p_created_before IS NULL OR m.created_at < p_created_before)
            ORDER BY m.embedding <=> p_vector
            LIMIT p_k
        ) m
        UNION ALL
        SELECT rl.id, rl.direct, m.tenant_id, m.id, NULL::float8, m.rank
        FROM rules rl
        CROSS JOIN LATERAL (
            SELECT m.tenant_id, m.id, ts_rank_cd(m.search_tsv, v_query)::float8 AS rank
            FROM contextual_memories m
            WHERE v_query IS NOT NULL AND m.tenant_id = rl.owner AND m.search_tsv @@ v_query
              AND (m.expires_at IS NULL OR m.expires_at > now())
              AND (rl.c_tags IS NULL OR m.tags @> rl.c_tags)
              AND (rl.c_any IS NULL OR m.tags && rl.c_any)
              AND (rl.c_contains IS NULL OR m.content @> rl.c_contains)
              AND (p_contains IS NULL OR m.content @> p_contains)
              AND (p_tags_all IS NULL OR m.tags @> p_tags_all)
              AND (p_tags_any IS NULL OR m.tags && p_tags_any)
              AND (p_min_relevance IS NULL OR m.relevance_score >= p_min_relevance)
              AND (p_max_relevance IS NULL OR m.relevance_score <= p_max_relevance)
              AND (p_created_after IS NULL OR m.created_at >= p_created_after)
              AND (p_created_before IS NULL OR m.created_at < p_created_before)
            ORDER BY rank DESC, m.id
            LIMIT p_k
        ) m
    ),
    -- One rule per memory: the rule that names the reader, else the oldest.
    chosen AS (
        SELECT DISTINCT ON (c.owner, c.memory) c.owner, c.memory, c.rule
        FROM candidates c
        ORDER BY c.owner, c.memory, c.direct DESC, c.rule
    ),
    scored AS (
        SELECT ch.owner, ch.memory, ch.rule, min(c.dist) AS dist, max(c.rank) AS rank
        FROM chosen ch JOIN candidates c ON c.owner = ch.owner AND c.memory = ch.memory
        GROUP BY ch.owner, ch.memory, ch.rule
    ),
    picked AS (
        (SELECT * FROM scored WHERE dist IS NOT NULL ORDER BY dist, memory LIMIT p_k)
        UNION
        (SELECT * FROM scored WHERE rank IS NOT NULL ORDER BY rank DESC, memory LIMIT p_k)
    ),
    audited AS (
        INSERT INTO audit_log (tenant_id, api_key_id, actor, action, resource_type, resource_id, outcome,
                               status_code, request_id, details)
        SELECT pk.owner, NULL, 'sharing', 'sharing.read', 'sharing_rule', pk.rule::text, 'success', 200,
               p_request_id, jsonb_build_object('reader', v_reader_key, 'memories', count(*))
        FROM picked pk
        GROUP BY pk.owner, pk.rule
        RETURNING 1
    )
    SELECT pk.rule, CASE WHEN rl.reveal_source THEN rl.owner_key END,
           substr(encode(sha256(convert_to(pk.rule::text || ':' || pk.memory::text, 'UTF8')), 'hex'), 1, 32)::uuid,
           m.content, m.tags, m.metadata, m.relevance_score, m.embedding IS NOT NULL, m.embedding_model,
           m.expires_at, m.created_at, m.updated_at, pk.dist, pk.rank, rl.anonymization
    FROM picked pk
    JOIN rules rl ON rl.id = pk.rule
    JOIN contextual_memories m ON m.tenant_id = pk.owner AND m.id = pk.memory;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Who may call what
-- ---------------------------------------------------------------------------------------------
REVOKE EXECUTE ON FUNCTION
    mnemo_current_tenant_federates(), mnemo_project_tenant(text), mnemo_project_tenant_key(uuid),
    mnemo_fed_lock_session(uuid), mnemo_fed_members_changed(uuid),
    mnemo_fed_aggregation_inputs(uuid), mnemo_fed_end(uuid, session_status, text),
    mnemo_fed_fail(uuid, text, uuid[], text[]),
    mnemo_fed_settle(uuid, jsonb, double precision, double precision, double precision, jsonb, uuid[],
                     double precision[], double precision[], double precision[], uuid[], text[]),
    mnemo_shared_memories(vector, text, integer, jsonb, text[], text[], double precision, double precision,
                          timestamptz, timestamptz, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    mnemo_current_tenant_federates(), mnemo_project_tenant(text), mnemo_project_tenant_key(uuid),
    mnemo_fed_lock_session(uuid), mnemo_fed_members_changed(uuid),
    mnemo_fed_aggregation_inputs(uuid), mnemo_fed_fail(uuid, text, uuid[], text[]),
    mnemo_fed_settle(uuid, jsonb, double precision, double precision, double precision, jsonb, uuid[],
                     double precision[], double precision[], double precision[], uuid[], text[]),
    mnemo_shared_memories(vector, text, integer, jsonb, text[], text[], double precision, double precision,
                          timestamptz, timestamptz, text)
TO mnemo_app;
-- mnemo_current_project() is called by the session policies as the querying role.
GRANT EXECUTE ON FUNCTION mnemo_current_project() TO mnemo_app;
