-- Results: one row per ended run, written once; git_commit is set once the run's results file
-- is on the remote, so a restart knows what still has to be pushed.
CREATE TABLE test_results (
    run_id     text        PRIMARY KEY,
    test_id    text        NOT NULL,
    start_time timestamptz NOT NULL,
    end_time   timestamptz NOT NULL,
    status     text        NOT NULL,
    summary    jsonb       NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    git_commit text
);
CREATE INDEX test_results_recent_by_test ON test_results (test_id, end_time DESC);
CREATE INDEX test_results_by_time ON test_results (start_time, end_time);
CREATE INDEX test_results_unpushed ON test_results (end_time) WHERE git_commit IS NULL;

-- Every state change of a run, in order.
CREATE TABLE test_run_events (
    id      bigserial   PRIMARY KEY,
    run_id  text        NOT NULL,
    status  text        NOT NULL,
    at      timestamptz NOT NULL DEFAULT now(),
    details jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX test_run_events_by_run ON test_run_events (run_id, id);
