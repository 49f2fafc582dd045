-- The delivery outbox: every commit status, merge-request comment update and notification
-- perfsync owes a forge or a sink, one row each, enqueued once (the unique key) when a run
-- starts or its result is recorded, and sent by the delivery task until it is sent or given up.
CREATE TABLE deliveries (
    id            bigserial   PRIMARY KEY,
    run_id        text        NOT NULL,
    -- `forge:<name>` or `notify:<name>`: the config entry it goes to (never a URL).
    target        text        NOT NULL,
    -- `status`, `comment` or `notification`.
    kind          text        NOT NULL,
    -- `started` or `ended`.
    event         text        NOT NULL,
    -- Rows of one target with the same key go out in id order (one commit status context,
    -- one merge-request comment); a row waits while an older one is pending.
    ordering_key  text        NOT NULL,
    -- What happened (the run, its verdict and figures), rendered per target when sent.
    payload       jsonb       NOT NULL,
    -- `pending`, `sent`, `failed` (given up or refused), `superseded` (a newer state of the
    -- same run made it pointless) or `skipped` (nothing to send it to, e.g. no merge request).
    state         text        NOT NULL DEFAULT 'pending',
    attempts      integer     NOT NULL DEFAULT 0,
    next_at       timestamptz NOT NULL DEFAULT now(),
    -- Set while a delivery task sends the row; another task (a replica) leaves it alone
    -- until then, and takes it over after a crash.
    claimed_until timestamptz,
    last_status   integer,
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    done_at       timestamptz,
    UNIQUE (run_id, target, kind, event)
);
CREATE INDEX deliveries_due ON deliveries (next_at) WHERE state = 'pending';
CREATE INDEX deliveries_order ON deliveries (target, ordering_key, id) WHERE state = 'pending';

-- Which run events have had their deliveries planned (in the transaction that enqueued
-- them), so a crash between recording a result and planning is completed at the next pass,
-- and a plan is never made twice. `details` keeps what the end needs from the start (labels).
CREATE TABLE delivery_plans (
    run_id     text        NOT NULL,
    event      text        NOT NULL,
    details    jsonb       NOT NULL DEFAULT '{}',
    planned_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, event)
);

-- The merge-request comment perfsync keeps per forge, commit and merge request.
CREATE TABLE forge_comments (
    target        text        NOT NULL,
    commit_sha    text        NOT NULL,
    merge_request text        NOT NULL,
    comment_id    text        NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target, commit_sha, merge_request)
);

-- The runs of a commit (the comment's table) and the results recorded since a point (the
-- planner's catch-up pass).
CREATE INDEX test_runs_by_commit ON test_runs (commit);
CREATE INDEX test_results_by_recorded ON test_results (recorded_at);
