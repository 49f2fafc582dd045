//! The OpenAPI document of `/api/v1` and the webhooks, served at `/api/v1/openapi.json`;
//! `perfsync openapi` prints it and `schemas/openapi.json` is the checked-in copy.

use serde_json::{json, Value};

fn err() -> Value {
    json!({"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn ok(desc: &str, schema: Value) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": schema}}})
}

pub fn document() -> Value {
    let secured = json!([{"bearer": []}]);
    let name =
        json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string"}});
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}});
    // A push webhook: its headers (name, required, description) and whether the provider can
    // send its JSON in a form's `payload` field.
    let hook = |summary: &str, headers: &[(&str, bool, &str)], forms: bool| {
        let parameters: Vec<Value> = headers
            .iter()
            .map(|(name, required, description)| json!({"name": name, "in": "header", "required": required, "description": description, "schema": {"type": "string"}}))
            .collect();
        let mut content = json!({"application/json": {"schema": {"type": "object"}}});
        if forms {
            content["application/x-www-form-urlencoded"] = json!({"schema": {"type": "object", "required": ["payload"],
                "properties": {"payload": {"type": "string", "description": "The push payload's JSON"}}}});
        }
        json!({"post": {
            "summary": summary,
            "description": "A body without a Content-Type is read as JSON; a content type not listed here is answered 415. A push that deletes the tracked branch starts no sync: 202 `ignored`.",
            "parameters": parameters,
            "requestBody": {"required": true, "content": content},
            "responses": {"200": ok("Ping answered", json!({"type": "object"})), "202": ok("Sync queued, or event ignored", json!({"type": "object"})),
                "400": err(), "401": err(), "404": err(), "413": {"description": "Body over 1 MiB"}, "415": err()}
        }})
    };
    json!({
        "openapi": "3.0.3",
        "info": {"title": "perfsync", "version": env!("CARGO_PKG_VERSION"), "description": "GitOps for k6 load tests: status, tests, runs, runner logs, manual runs, aborts, syncs. No answer holds a secret value perfsync knows: each is replaced by `***`."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
                "Run": {"type": "object", "required": ["id", "test", "revision", "status"], "properties": {
                    "id": {"type": "string"}, "test": {"type": "string"}, "revision": {"type": "string"}, "reason": {"type": "string"},
                    "trigger": {"type": "string"}, "status": {"type": "string"}, "commit": {"type": "string", "nullable": true},
                    "author": {"type": "string", "nullable": true}, "createdAt": {"type": "string", "format": "date-time"},
                    "startedAt": {"type": "string", "format": "date-time", "nullable": true}, "endedAt": {"type": "string", "format": "date-time", "nullable": true}, "ended": {"type": "boolean", "description": "Whether the run has ended (its status is final)"},
                    "summary": {"type": "object", "nullable": true, "description": "RunSummary (schemas/runsummary.schema.json)"}}},
                "RunLogs": {"type": "object", "required": ["run", "runners"], "description": "Each runner's last log lines. Every secret value perfsync knows is replaced by `***`; a line over 2,000 characters is cut with a marker.", "properties": {
                    "run": {"type": "string"},
                    "runners": {"type": "array", "items": {"type": "object", "required": ["index", "lines"], "properties": {"index": {"type": "integer", "minimum": 1}, "lines": {"type": "array", "items": {"type": "string"}}}}}}},
                "Test": {"type": "object", "required": ["name", "file", "valid"], "properties": {
                    "name": {"type": "string"}, "file": {"type": "string"}, "valid": {"type": "boolean"}, "revision": {"type": "string", "nullable": true},
                    "errors": {"type": "array", "items": {"type": "object"}}, "lastRun": {"type": "object", "nullable": true}}}
            }
        },
        "paths": {
            "/healthz": {"get": {"summary": "Alive", "responses": {"200": ok("Alive", json!({"type": "object"}))}}},
            "/readyz": {"get": {"summary": "Database reachable and last sync not failing", "responses": {"200": ok("Ready", json!({"type": "object"})), "503": ok("Not ready", json!({"type": "object"}))}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "Prometheus text format", "content": {"text/plain": {}}}}}},
            "/api/v1/status": {"get": {"summary": "Sync state, active and queued runs", "security": secured, "responses": {"200": ok("Status", json!({"type": "object"})), "401": err()}}},
            "/api/v1/tests": {"get": {"summary": "Every test with its last verdict", "security": secured, "responses": {"200": ok("Tests", json!({"type": "array", "items": {"$ref": "#/components/schemas/Test"}})), "401": err()}}},
            "/api/v1/tests/{name}": {"get": {"summary": "One test, its errors and history", "security": secured, "parameters": [name], "responses": {"200": ok("Test", json!({"$ref": "#/components/schemas/Test"})), "401": err(), "404": err()}}},
            "/api/v1/tests/{name}/runs": {"post": {"summary": "Queue a manual run of the test's current revision", "security": secured, "parameters": [name],
                "responses": {"202": ok("Queued", json!({"type": "object", "properties": {"run": {"type": "string"}, "status": {"type": "string"}}})), "401": err(), "404": err(), "409": err()}}},
            "/api/v1/runs": {"get": {"summary": "Recent runs", "security": secured,
                "parameters": [{"name": "test", "in": "query", "schema": {"type": "string"}}, {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}}],
                "responses": {"200": ok("Runs", json!({"type": "array", "items": {"$ref": "#/components/schemas/Run"}})), "401": err()}}},
            "/api/v1/runs/{id}": {"get": {"summary": "One run with its summary; with `wait`, once it has ended", "security": secured,
                "description": "With `wait` (a duration such as `30s`, at most 55s) the answer comes when the run has ended (`ended: true`) or the wait is over, whichever is first: a long-poll, so a pipeline gate asks again only when a wait ran out. Every replica answers it.",
                "parameters": [id, {"name": "wait", "in": "query", "schema": {"type": "string", "example": "30s"}}],
                "responses": {"200": ok("Run", json!({"$ref": "#/components/schemas/Run"})), "400": err(), "401": err(), "404": err()}}},
            "/api/v1/runs/{id}/logs": {"get": {"summary": "Each runner's log tail, secret values masked", "security": secured, "parameters": [id], "responses": {"200": ok("Logs", json!({"$ref": "#/components/schemas/RunLogs"})), "401": err(), "404": err()}}},
            "/api/v1/runs/{id}/abort": {"post": {"summary": "Stop an active run, or abort a queued one", "security": secured, "parameters": [id],
                "responses": {"200": ok("Aborted before it started", json!({"type": "object"})), "202": ok("Stopping", json!({"type": "object"})), "401": err(), "404": err(), "409": err()}}},
            "/api/v1/runs/{id}/acknowledge": {"post": {"summary": "Acknowledge a run's regression: later runs of its series are compared with it and what follows it", "security": secured, "parameters": [id],
                "requestBody": {"required": false, "content": {"application/json": {"schema": {"type": "object", "properties": {"reason": {"type": "string", "maxLength": 500}}}}}},
                "responses": {"201": ok("Acknowledged", json!({"type": "object"})), "200": ok("Already acknowledged", json!({"type": "object"})), "400": err(), "401": err(), "404": err()}}},
            "/api/v1/changes": {"get": {"summary": "Change points over each test's series (E-divisive means with a t-test), newest first", "security": secured,
                "parameters": [{"name": "test", "in": "query", "schema": {"type": "string"}}, {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
                "responses": {"200": ok("Change points", json!({"type": "array", "items": {"type": "object", "required": ["test", "series", "metric", "runId", "end", "index", "pValue", "meanBefore", "meanAfter", "magnitude"]}})), "401": err()}}},
            "/api/v1/sync": {"post": {"summary": "Sync now", "security": secured, "responses": {"202": ok("Sync queued", json!({"type": "object"})), "401": err()}}},
            "/hooks/github": hook("GitHub push webhook", &[("X-Hub-Signature-256", true, "`sha256=` and the HMAC-SHA256 of the body as sent (the form, in form mode)"), ("X-GitHub-Event", true, "`push`, or `ping`")], true),
            "/hooks/gitlab": hook("GitLab push webhook", &[("X-Gitlab-Token", true, "The secret token"), ("X-Gitlab-Event", true, "`Push Hook`")], false),
            "/hooks/gitea": hook("Gitea or Forgejo push webhook", &[
                ("X-Gitea-Signature", false, "HMAC-SHA256 of the JSON (in form mode: of the `payload` field); X-Forgejo-Signature instead from Forgejo, checked first when both come"),
                ("X-Forgejo-Signature", false, "Forgejo's name for X-Gitea-Signature"),
                ("X-Gitea-Event", false, "`push`; X-Forgejo-Event instead from Forgejo"),
                ("X-Forgejo-Event", false, "Forgejo's name for X-Gitea-Event")], true),
            "/hooks/generic": hook("Generic HMAC push webhook", &[("X-Perfsync-Signature", true, "`sha256=` and the HMAC-SHA256 of the body")], false)
        }
    })
}

pub fn document_text() -> String {
    let mut s = serde_json::to_string_pretty(&document()).unwrap_or_default();
    s.push('\n');
    s
}
