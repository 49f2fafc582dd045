-- Every state change of a run is announced on channel `perfsync_run_events` (payload: the run
-- id) when its transaction commits, so the API's long-poll of a run answers the moment the
-- run ends, on whichever replica the caller reached.
CREATE FUNCTION perfsync_run_event_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('perfsync_run_events', NEW.run_id);
    RETURN NEW;
END
$$;

CREATE TRIGGER test_run_events_notify AFTER INSERT ON test_run_events
    FOR EACH ROW EXECUTE FUNCTION perfsync_run_event_notify();
