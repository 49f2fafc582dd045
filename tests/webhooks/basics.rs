//! The providers' push payloads over HTTP into the sync loop; refusals trigger nothing; a burst
//! coalesces.

use super::*;

fn github_push(after: &str, git_ref: &str) -> String {
    serde_json::json!({
        "ref": git_ref,
        "before": "0000000000000000000000000000000000000000",
        "after": after,
        "repository": {"id": 1296269, "full_name": "qa/load-tests", "clone_url": "https://github.com/qa/load-tests.git", "default_branch": "main"},
        "pusher": {"name": "ada", "email": "ada@example.com"},
        "sender": {"login": "ada", "id": 1},
        "created": false, "deleted": false, "forced": false,
        "commits": [{"id": after, "message": "change t0", "author": {"name": "Ada Tester", "email": "ada@example.com"}, "added": [], "removed": [], "modified": ["tests/t0/script.js"]}],
        "head_commit": {"id": after, "message": "change t0"}
    })
    .to_string()
}

fn gitlab_push(after: &str) -> String {
    serde_json::json!({
        "object_kind": "push", "event_name": "push", "before": "95790bf891e76fee5e1747ab589903a6a1f80f22",
        "after": after, "ref": "refs/heads/main", "checkout_sha": after, "user_name": "Ada Tester",
        "project": {"id": 15, "path_with_namespace": "qa/load-tests", "default_branch": "main"},
        "commits": [{"id": after, "message": "change", "author": {"name": "Ada Tester", "email": "ada@example.com"}}],
        "total_commits_count": 1
    })
    .to_string()
}

fn gitea_push(after: &str) -> String {
    serde_json::json!({
        "ref": "refs/heads/main", "before": "28e1879d029cb852e4844d9c718537df08844e03", "after": after,
        "compare_url": "", "commits": [{"id": after, "message": "change\n", "author": {"name": "Ada Tester", "email": "ada@example.com", "username": "ada"}}],
        "repository": {"id": 140, "full_name": "qa/load-tests", "default_branch": "main"},
        "pusher": {"login": "ada"}, "sender": {"login": "ada"}
    })
    .to_string()
}

#[tokio::test]
async fn each_provider_triggers_a_sync_with_its_real_payload() {
    let mut h = harness().await;
    let head = h
        .remote
        .commit(&[("tests/t0/script.js", Some(&script("gh")))], "gh");
    let body = github_push(&head, "refs/heads/main");
    let sig = format!("sha256={}", sign(SECRET, body.as_bytes()));
    let (status, text) = http(
        h.addr,
        "POST",
        "/hooks/github",
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &sig),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
    .await;
    assert_eq!(status, 202, "{text}");
    let o = next_outcome(&mut h).await;
    assert_eq!((o.head.as_str(), o.plan.runs.len()), (head.as_str(), 1));

    let head = h
        .remote
        .commit(&[("tests/t1/script.js", Some(&script("gl")))], "gl");
    let (status, _) = http(
        h.addr,
        "POST",
        "/hooks/gitlab",
        &[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", SECRET)],
        gitlab_push(&head).as_bytes(),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(next_outcome(&mut h).await.head, head);

    let head = h
        .remote
        .commit(&[("tests/t0/script.js", Some(&script("gitea")))], "gitea");
    let body = gitea_push(&head);
    let (status, _) = http(
        h.addr,
        "POST",
        "/hooks/gitea",
        &[
            ("X-Gitea-Event", "push"),
            ("X-Gitea-Signature", &sign(SECRET, body.as_bytes())),
        ],
        body.as_bytes(),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(next_outcome(&mut h).await.head, head);

    let head = h.remote.commit(
        &[("tests/t1/script.js", Some(&script("generic")))],
        "generic",
    );
    let body = format!("{{\"ref\":\"refs/heads/main\",\"after\":\"{head}\"}}");
    let (status, _) = http(
        h.addr,
        "POST",
        "/hooks/generic",
        &[(
            "X-Perfsync-Signature",
            &format!("sha256={}", sign(SECRET, body.as_bytes())),
        )],
        body.as_bytes(),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(next_outcome(&mut h).await.head, head);

    let (status, _) = http(
        h.addr,
        "POST",
        "/hooks/github",
        &[
            ("X-GitHub-Event", "ping"),
            (
                "X-Hub-Signature-256",
                &format!("sha256={}", sign(SECRET, b"{}")),
            ),
        ],
        b"{}",
    )
    .await;
    assert_eq!(status, 200);
    h.db.drop_schema().await;
}

#[tokio::test]
async fn bad_requests_are_refused_and_trigger_nothing() {
    let mut h = harness().await;
    let head = h
        .remote
        .commit(&[("tests/t0/script.js", Some(&script("x")))], "x");
    let body = github_push(&head, "refs/heads/main");
    let good_sig = format!("sha256={}", sign(SECRET, body.as_bytes()));
    let other_body = github_push(&head, "refs/heads/main").replace("change t0", "change t1");
    let cases: Vec<(&str, Vec<(&str, String)>, Vec<u8>, u16)> = vec![
        (
            "/hooks/github",
            vec![("X-GitHub-Event", "push".into())],
            body.clone().into_bytes(),
            401,
        ),
        (
            "/hooks/github",
            vec![
                ("X-GitHub-Event", "push".into()),
                (
                    "X-Hub-Signature-256",
                    format!("sha256={}", sign("wrong", body.as_bytes())),
                ),
            ],
            body.clone().into_bytes(),
            401,
        ),
        // A signature replayed from another body.
        (
            "/hooks/github",
            vec![
                ("X-GitHub-Event", "push".into()),
                ("X-Hub-Signature-256", good_sig.clone()),
            ],
            other_body.into_bytes(),
            401,
        ),
        (
            "/hooks/gitlab",
            vec![
                ("X-Gitlab-Event", "Push Hook".into()),
                ("X-Gitlab-Token", "guess".into()),
            ],
            gitlab_push(&head).into_bytes(),
            401,
        ),
        (
            "/hooks/github",
            vec![
                ("X-GitHub-Event", "push".into()),
                (
                    "X-Hub-Signature-256",
                    format!("sha256={}", sign(SECRET, b"{oops")),
                ),
            ],
            b"{oops".to_vec(),
            400,
        ),
        (
            "/hooks/github",
            vec![
                ("X-GitHub-Event", "push".into()),
                (
                    "X-Hub-Signature-256",
                    format!(
                        "sha256={}",
                        sign(SECRET, github_push(&head, "refs/heads/dev").as_bytes())
                    ),
                ),
            ],
            github_push(&head, "refs/heads/dev").into_bytes(),
            202,
        ),
        (
            "/hooks/github",
            vec![
                ("X-GitHub-Event", "issues".into()),
                ("X-Hub-Signature-256", good_sig.clone()),
            ],
            body.clone().into_bytes(),
            202,
        ),
        (
            "/hooks/github",
            vec![
                ("X-GitHub-Event", "push".into()),
                ("X-Hub-Signature-256", good_sig.clone()),
            ],
            vec![b' '; 1024 * 1024 + 1],
            413,
        ),
        ("/api/v1/sync", vec![], vec![], 401),
        (
            "/api/v1/sync",
            vec![("Authorization", "Bearer nope".into())],
            vec![],
            401,
        ),
    ];
    for (path, headers, body, want) in cases {
        let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, text) = http(h.addr, "POST", path, &hs, &body).await;
        assert_eq!(status, want, "{path} {headers:?}: {text}");
        if status == 401 || status == 400 {
            assert!(
                text.contains("\"error\""),
                "errors have one JSON shape: {text}"
            );
        }
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(500), h.outcomes.recv())
            .await
            .is_err(),
        "nothing was triggered"
    );
    let (status, _) = http(
        h.addr,
        "POST",
        "/api/v1/sync",
        &[("Authorization", "Bearer api-token-1")],
        b"",
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(next_outcome(&mut h).await.head, head);
    let (_, metrics) = http(h.addr, "GET", "/metrics", &[], b"").await;
    assert!(
        metrics.contains(
            "perfsync_webhook_requests_total{provider=\"github\",outcome=\"unauthorized\"} 3"
        ),
        "{metrics}"
    );
    h.db.drop_schema().await;
}

#[tokio::test]
async fn a_thousand_signed_webhooks_in_a_second_make_at_most_two_syncs() {
    let mut h = harness().await;
    let head = h
        .remote
        .commit(&[("tests/t0/script.js", Some(&script("burst")))], "burst");
    let body = Arc::new(github_push(&head, "refs/heads/main"));
    let sig = Arc::new(format!("sha256={}", sign(SECRET, body.as_bytes())));
    let before = h.metrics.encode();
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    // 64 connections in flight: client and server sockets share this process's descriptor limit.
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    for _ in 0..1000 {
        let (addr, body, sig, gate) = (h.addr, body.clone(), sig.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            http(
                addr,
                "POST",
                "/hooks/github",
                &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)],
                body.as_bytes(),
            )
            .await
            .0
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 202);
    }
    let elapsed = started.elapsed();
    eprintln!("1000 webhooks sent in {elapsed:?}");
    let first = next_outcome(&mut h).await;
    assert_eq!(first.plan.runs.len(), 1);
    // Give any second sync time to happen, then count.
    let second = tokio::time::timeout(Duration::from_secs(2), h.outcomes.recv()).await;
    let third = tokio::time::timeout(Duration::from_secs(1), h.outcomes.recv()).await;
    assert!(third.is_err(), "a third sync ran");
    if let Ok(Some(s)) = second {
        assert!(s.up_to_date, "a second sync may only find nothing to do");
    }
    let syncs = |m: &str| -> u64 {
        m.lines()
            .filter(|l| l.starts_with("perfsync_syncs_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    assert!(syncs(&h.metrics.encode()) - syncs(&before) <= 2);
    h.db.drop_schema().await;
}
