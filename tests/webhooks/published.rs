//! The forges' own published example push payloads, sent as each forge sends them (headers,
//! content types, signatures), are read with the commit they announce.

use super::*;
use perfsync::server::hooks::{judge, Provider, Verdict};

/// A fixture, the forge that publishes it, the branch it pushes to, the content types that
/// forge can send it in, and the commit it announces (None: not a push to a branch).
struct Published {
    file: &'static str,
    forge: Forge,
    branch: &'static str,
    content_types: &'static [&'static str],
    commit: Option<&'static str>,
}

const PUBLISHED: &[Published] = &[
    Published {
        file: "github-push-new-branch.json",
        forge: Forge::Github,
        branch: "master",
        content_types: &[JSON, FORM],
        commit: Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246"),
    },
    Published {
        file: "gitlab-push.json",
        forge: Forge::Gitlab,
        branch: "master",
        content_types: &[JSON],
        commit: Some("da1560886d4f094c3e6c9ef40349f7d38b5d27d7"),
    },
    Published {
        file: "gitea-push.json",
        forge: Forge::Gitea,
        branch: "develop",
        content_types: &[JSON, FORM],
        commit: Some("bffeb74224043ba2feb48d137756c8a9331c449a"),
    },
    Published {
        file: "forgejo-push.json",
        forge: Forge::Forgejo,
        branch: "develop",
        content_types: &[JSON, FORM],
        commit: Some("bffeb74224043ba2feb48d137756c8a9331c449a"),
    },
    Published {
        file: "forgejo-push.json",
        forge: Forge::ForgejoOnly,
        branch: "develop",
        content_types: &[JSON, FORM],
        commit: Some("bffeb74224043ba2feb48d137756c8a9331c449a"),
    },
    // docs.github.com's push example deletes a tag: a push, but not to a branch.
    Published {
        file: "github-push-docs.json",
        forge: Forge::Github,
        branch: "master",
        content_types: &[JSON, FORM],
        commit: None,
    },
];

fn provider(forge: Forge) -> Provider {
    Provider::parse(forge.provider()).unwrap()
}

#[test]
fn every_published_payload_is_read_with_its_commit() {
    for p in PUBLISHED {
        let json = fixture(p.file);
        for ct in p.content_types {
            let headers = push_headers(p.forge, ct, &json, SECRET);
            let verdict = judge(
                provider(p.forge),
                &headers,
                &push_body(ct, &json),
                SECRET,
                p.branch,
            );
            let what = format!("{} from {:?} as {ct}", p.file, p.forge);
            match p.commit {
                Some(c) => assert_eq!(
                    verdict,
                    Verdict::Push {
                        commit: Some(c.to_string())
                    },
                    "{what}"
                ),
                None => assert_eq!(
                    verdict,
                    Verdict::Ignored(format!(
                        "push to refs/tags/simple-tag, not refs/heads/{}",
                        p.branch
                    )),
                    "{what}"
                ),
            }
            // Signed with another secret, the same request is refused.
            let forged = push_headers(p.forge, ct, &json, "not the secret");
            assert!(
                matches!(
                    judge(
                        provider(p.forge),
                        &forged,
                        &push_body(ct, &json),
                        SECRET,
                        p.branch
                    ),
                    Verdict::Unauthorized(_)
                ),
                "{what}"
            );
        }
    }
}

#[tokio::test]
async fn published_pushes_over_http_start_a_sync_naming_their_commit() {
    for branch in ["master", "develop"] {
        let mut h = harness_on(branch).await;
        for p in PUBLISHED.iter().filter(|p| p.branch == branch) {
            let json = fixture(p.file);
            for ct in p.content_types {
                let what = format!("{} from {:?} as {ct}", p.file, p.forge);
                let head = h.change(&format!("{}-{ct}", p.file));
                let (status, answer) = h
                    .send(
                        p.forge.provider(),
                        &push_headers(p.forge, ct, &json, SECRET),
                        &push_body(ct, &json),
                    )
                    .await;
                assert_eq!(status, 202, "{what}: {answer}");
                match p.commit {
                    Some(c) => {
                        assert_eq!(answer["status"], "sync-queued", "{what}: {answer}");
                        assert_eq!(answer["commit"], c, "{what}: {answer}");
                        // The example's commit is not in the test remote: the sync fetches the
                        // branch and finds the head pushed above.
                        assert_eq!(next_outcome(&mut h).await.head, head, "{what}");
                    }
                    None => {
                        assert_eq!(answer["status"], "ignored", "{what}: {answer}");
                        no_sync(&mut h, 1000, &what).await;
                    }
                }
            }
        }
        h.db.drop_schema().await;
    }
}

#[tokio::test]
async fn forgejo_headers_alone_are_enough_and_its_own_signature_is_checked() {
    let mut h = harness_on("develop").await;
    let json = fixture("forgejo-push.json");
    let good = sign(SECRET, &json);
    let forgejo_only = push_headers(Forge::ForgejoOnly, JSON, &json, SECRET);
    let both = push_headers(Forge::Forgejo, JSON, &json, SECRET);
    let cases: Vec<(&str, HeaderList, Vec<u8>, u16)> = vec![
        (
            "a wrong X-Forgejo-Signature is not rescued by a right X-Gitea-Signature",
            with_header(both.clone(), "X-Forgejo-Signature", &sign("guess", &json)),
            json.clone(),
            401,
        ),
        (
            "no signature at all",
            forgejo_only
                .iter()
                .filter(|(k, _)| !k.ends_with("Signature"))
                .cloned()
                .collect(),
            json.clone(),
            401,
        ),
        (
            "a form signed over the form rather than its payload",
            with_header(
                push_headers(Forge::ForgejoOnly, FORM, &json, SECRET),
                "X-Forgejo-Signature",
                &sign(SECRET, &form(&json)),
            ),
            form(&json),
            401,
        ),
        (
            "another event, named by X-Forgejo-Event",
            with_header(forgejo_only.clone(), "X-Forgejo-Event", "issues"),
            json.clone(),
            202,
        ),
    ];
    for (what, headers, body, want) in cases {
        let (status, answer) = h.send("gitea", &headers, &body).await;
        assert_eq!(status, want, "{what}: {answer}");
    }
    no_sync(&mut h, 500, "refused and ignored requests").await;
    assert!(forgejo_only
        .iter()
        .any(|(k, v)| k == "X-Forgejo-Signature" && *v == good));
    assert!(!forgejo_only.iter().any(|(k, _)| k.starts_with("X-Gitea")));
    let head = h.change("forgejo");
    let (status, answer) = h.send("gitea", &forgejo_only, &json).await;
    assert_eq!((status, &answer["status"]), (202, &"sync-queued".into()));
    assert_eq!(next_outcome(&mut h).await.head, head);
    h.db.drop_schema().await;
}
