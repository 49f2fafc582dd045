-- Sync state: what the daemon last synced, every test's current revision, every template.
CREATE TABLE sync_state (
    repository      text        NOT NULL,
    branch          text        NOT NULL,
    last_commit     text,
    last_synced_at  timestamptz,
    last_attempt_at timestamptz,
    last_error      text,
    PRIMARY KEY (repository, branch)
);

CREATE TABLE perf_tests (
    name              text        PRIMARY KEY,
    file              text        NOT NULL,
    -- Last valid revision; kept while the test is invalid.
    revision          text,
    template          text,
    template_revision text,
    commit            text        NOT NULL,
    author            text,
    valid             boolean     NOT NULL,
    errors            jsonb       NOT NULL DEFAULT '[]',
    spec              jsonb,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE test_templates (
    name       text        PRIMARY KEY,
    file       text        NOT NULL,
    revision   text,
    valid      boolean     NOT NULL,
    content    jsonb,
    commit     text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Runs are planned in the same transaction that advances sync_state.last_commit, so a crash
-- either loses the whole sync (and it is planned again) or keeps all of it.
CREATE TABLE test_runs (
    id         text        PRIMARY KEY,
    test       text        NOT NULL,
    revision   text        NOT NULL,
    attempt    integer     NOT NULL,
    reason     text        NOT NULL,
    trigger    text        NOT NULL,
    status     text        NOT NULL,
    commit     text,
    author     text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    ended_at   timestamptz,
    UNIQUE (test, revision, attempt)
);
CREATE INDEX test_runs_recent_by_test ON test_runs (test, created_at DESC);
CREATE INDEX test_runs_by_time ON test_runs (created_at);
CREATE INDEX test_runs_open ON test_runs (status) WHERE status IN ('queued', 'running');

CREATE TABLE audit_log (
    id      bigserial   PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text        NOT NULL,
    action  text        NOT NULL,
    test    text,
    run_id  text,
    details jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_by_time ON audit_log (at);
