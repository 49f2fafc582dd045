//! Content types: GitHub's default form encoding is read and verified over the raw body; a
//! content type a provider's body is not read in is refused with 415, naming it.

use super::*;

#[tokio::test]
async fn github_forms_are_accepted_and_verified_over_the_raw_body() {
    let mut h = harness_on("master").await;
    let json = fixture("github-push-new-branch.json");
    let body = form(&json);
    let headers = push_headers(Forge::Github, FORM, &json, SECRET);
    let sig = |b: &[u8]| format!("sha256={}", sign(SECRET, b));
    let other = form(&fixture_with(
        "github-push-new-branch.json",
        &[("after", "1".repeat(40).into())],
    ));
    let cases: Vec<(&str, HeaderList, Vec<u8>, u16)> = vec![
        (
            "signed over the JSON in the form, not the body sent",
            with_header(headers.clone(), "X-Hub-Signature-256", &sig(&json)),
            body.clone(),
            401,
        ),
        (
            "signed with another secret",
            push_headers(Forge::Github, FORM, &json, "not the secret"),
            body.clone(),
            401,
        ),
        (
            "a signature replayed onto another form",
            headers.clone(),
            other,
            401,
        ),
        (
            "no signature",
            headers
                .iter()
                .filter(|(k, _)| k != "X-Hub-Signature-256")
                .cloned()
                .collect(),
            body.clone(),
            401,
        ),
        (
            "signed, but no payload field",
            with_header(headers.clone(), "X-Hub-Signature-256", &sig(b"zen=1")),
            b"zen=1".to_vec(),
            400,
        ),
    ];
    for (what, hs, b, want) in cases {
        let (status, answer) = h.send("github", &hs, &b).await;
        assert_eq!(status, want, "{what}: {answer}");
        assert!(answer["error"]["message"].is_string(), "{what}: {answer}");
    }
    no_sync(&mut h, 500, "refused requests").await;

    let head = h.change("form");
    let (status, answer) = h.send("github", &headers, &body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["commit"], "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
    assert_eq!(next_outcome(&mut h).await.head, head);
    // The charset parameter some proxies add changes nothing.
    let head = h.change("form-charset");
    let hs = with_header(headers, "Content-Type", &format!("{FORM}; charset=UTF-8"));
    let (status, _) = h.send("github", &hs, &body).await;
    assert_eq!(status, 202);
    assert_eq!(next_outcome(&mut h).await.head, head);
    let metrics = h.metrics.encode();
    assert!(
        metrics.contains(
            "perfsync_webhook_requests_total{provider=\"github\",outcome=\"unauthorized\"} 4"
        ),
        "{metrics}"
    );
    h.db.drop_schema().await;
}

#[tokio::test]
async fn unsupported_content_types_are_415_and_named() {
    let mut h = harness_on("master").await;
    let gh = fixture("github-push-new-branch.json");
    let gl = fixture("gitlab-push.json");
    let gitea = fixture("gitea-push.json");
    let generic = br#"{"ref":"refs/heads/master"}"#.to_vec();
    let signed = |ct: &str, forge: Forge, json: &[u8]| {
        // Signed as if the body were JSON: a signature does not make a content type readable.
        with_header(push_headers(forge, JSON, json, SECRET), "Content-Type", ct)
    };
    let cases: Vec<(&str, &str, HeaderList, Vec<u8>)> = vec![
        (
            "github",
            "text/plain",
            signed("text/plain; charset=utf-8", Forge::Github, &gh),
            gh.clone(),
        ),
        (
            "github",
            "multipart/form-data",
            signed("multipart/form-data; boundary=x", Forge::Github, &gh),
            gh.clone(),
        ),
        // GitLab has no form mode.
        ("gitlab", FORM, signed(FORM, Forge::Gitlab, &gl), form(&gl)),
        (
            "gitea",
            "application/xml",
            signed("application/xml", Forge::Gitea, &gitea),
            gitea.clone(),
        ),
        (
            "generic",
            "text/plain",
            vec![
                ("Content-Type".into(), "text/plain".into()),
                (
                    "X-Perfsync-Signature".into(),
                    format!("sha256={}", sign(SECRET, &generic)),
                ),
            ],
            generic.clone(),
        ),
    ];
    for (provider, named, hs, body) in cases {
        let (status, answer) = h.send(provider, &hs, &body).await;
        assert_eq!(status, 415, "{provider} {named}: {answer}");
        assert_eq!(answer["error"]["code"], "unsupported-media-type");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("`{named}`")),
            "{provider} {named}: {message}"
        );
    }
    no_sync(&mut h, 500, "refused content types").await;
    let metrics = h.metrics.encode();
    assert!(
        metrics.contains(
            "perfsync_webhook_requests_total{provider=\"github\",outcome=\"unsupported-media-type\"} 2"
        ),
        "{metrics}"
    );
    h.db.drop_schema().await;
}
