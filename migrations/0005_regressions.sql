-- The statistical regression gate's history: results of one test and series, newest first.
CREATE INDEX test_results_by_series
    ON test_results (test_id, (summary->'regression'->>'series'), end_time DESC);

-- Regressions a team accepted (through the API or results/<test>/acknowledged.yaml): the
-- baseline of later runs of the series starts at the acknowledged run.
CREATE TABLE acknowledgements (
    run_id  text        PRIMARY KEY,
    test_id text        NOT NULL,
    actor   text        NOT NULL,
    reason  text        NOT NULL DEFAULT '',
    source  text        NOT NULL,
    at      timestamptz NOT NULL DEFAULT now()
);

-- Shifts in a series' history, recomputed after every run of it: one row per metric and the
-- first run of the new level.
CREATE TABLE change_points (
    test_id        text             NOT NULL,
    series         text             NOT NULL,
    metric         text             NOT NULL,
    run_id         text             NOT NULL,
    commit         text,
    run_end        timestamptz      NOT NULL,
    p_value        double precision NOT NULL,
    change_percent double precision,
    point          jsonb            NOT NULL,
    detected_at    timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (test_id, series, metric, run_id)
);
CREATE INDEX change_points_by_test ON change_points (test_id, run_end DESC);
