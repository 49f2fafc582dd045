//! A push that deletes the tracked branch starts no sync (one could only fail): it is answered
//! 202 with the reason, and logged at warn.

use super::*;
use serde_json::json;

const NULL_ID: &str = "0000000000000000000000000000000000000000";

#[tokio::test]
async fn a_push_deleting_the_tracked_branch_starts_no_sync() {
    let (logs, _guard) = crate::support::logs::Logs::capture();
    let mut h = harness_on("master").await;
    // docs.github.com's example is a deletion already (`after` null, `deleted: true`), of a
    // tag: pointed at the tracked branch. The others' examples are made deletions the way
    // their forges send one: `after` null (GitLab: no `checkout_sha` either).
    let deletions: Vec<(Forge, &str, Vec<u8>)> = vec![
        (
            Forge::Github,
            JSON,
            fixture_with(
                "github-push-docs.json",
                &[("ref", "refs/heads/master".into())],
            ),
        ),
        (
            Forge::Github,
            FORM,
            fixture_with(
                "github-push-docs.json",
                &[("ref", "refs/heads/master".into())],
            ),
        ),
        (
            Forge::Gitlab,
            JSON,
            fixture_with(
                "gitlab-push.json",
                &[
                    ("after", NULL_ID.into()),
                    ("checkout_sha", json!(null)),
                    ("commits", json!([])),
                    ("total_commits_count", json!(0)),
                ],
            ),
        ),
        (
            Forge::Gitea,
            JSON,
            fixture_with(
                "gitea-push.json",
                &[
                    ("ref", "refs/heads/master".into()),
                    ("after", NULL_ID.into()),
                    ("commits", json!([])),
                ],
            ),
        ),
        (
            Forge::ForgejoOnly,
            FORM,
            fixture_with(
                "forgejo-push.json",
                &[
                    ("ref", "refs/heads/master".into()),
                    ("after", NULL_ID.into()),
                    ("commits", json!([])),
                ],
            ),
        ),
    ];
    for (forge, ct, json) in &deletions {
        let what = format!("{forge:?} as {ct}");
        let (status, answer) = h
            .send(
                forge.provider(),
                &push_headers(*forge, ct, json, SECRET),
                &push_body(ct, json),
            )
            .await;
        assert_eq!(status, 202, "{what}: {answer}");
        assert_eq!(answer["status"], "ignored", "{what}: {answer}");
        let reason = answer["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("deleted branch `master`"),
            "{what}: {reason}"
        );
    }
    no_sync(&mut h, 1500, "a push deleting the branch").await;

    let logged = logs.text();
    let warnings: Vec<&str> = logged
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("deleted the tracked branch"))
        .collect();
    assert_eq!(warnings.len(), deletions.len(), "{logged}");
    // The commit the branch was at, where the payload names it (GitHub's example does).
    assert!(
        warnings[0].contains("branch=master")
            && warnings[0].contains("6113728f27ae82c7b1a177c8d03f9e96e0adf246"),
        "{}",
        warnings[0]
    );
    assert!(!logged.contains(SECRET));
    let metrics = h.metrics.encode();
    assert!(
        metrics.contains(
            "perfsync_webhook_requests_total{provider=\"github\",outcome=\"branch-deleted\"} 2"
        ),
        "{metrics}"
    );

    // The loop is alive: the branch pushed again syncs at once.
    let head = h.change("recreated");
    let json = fixture("github-push-new-branch.json");
    let (status, _) = h
        .send(
            "github",
            &push_headers(Forge::Github, JSON, &json, SECRET),
            &json,
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(next_outcome(&mut h).await.head, head);
    h.db.drop_schema().await;
}
