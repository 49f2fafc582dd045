//! `forges:` — where commit statuses and merge-request comments go (GitHub, GitLab,
//! Gitea/Forgejo). Tokens are secret references like every other secret of the config.

use super::SecretRef;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which forge API a `forges:` entry speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ForgeKind {
    /// GitHub or GitHub Enterprise Server (REST API v3).
    Github,
    /// GitLab (REST API v4).
    Gitlab,
    /// Gitea (API v1).
    Gitea,
    /// Forgejo (Gitea's API v1).
    Forgejo,
}

impl ForgeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ForgeKind::Github => "github",
            ForgeKind::Gitlab => "gitlab",
            ForgeKind::Gitea => "gitea",
            ForgeKind::Forgejo => "forgejo",
        }
    }

    /// The public instance's API base URL; Gitea and Forgejo are self-hosted, so none.
    pub fn default_api_url(self) -> Option<&'static str> {
        match self {
            ForgeKind::Github => Some("https://api.github.com"),
            ForgeKind::Gitlab => Some("https://gitlab.com/api/v4"),
            ForgeKind::Gitea | ForgeKind::Forgejo => None,
        }
    }
}

/// One forge perfsync reports verdicts to: a commit status per test on the commit that
/// triggered each run, and optionally one comment on the merge request that brought it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ForgeConfig {
    /// Names this forge in logs and in the delivery outbox (default: its `kind`). Keep it
    /// stable: deliveries are keyed by it. Lowercase letters, digits and `-`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub kind: ForgeKind,
    /// API base URL, for self-hosted instances: `https://github.example.com/api/v3`,
    /// `https://gitlab.example.com/api/v4`, `https://gitea.example.com/api/v1`. Default
    /// `https://api.github.com` (github) and `https://gitlab.com/api/v4` (gitlab); gitea and
    /// forgejo must give it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// The repository on the forge: `owner/repo` (github, gitea, forgejo); the numeric
    /// project id or the full path `group/subgroup/project` (gitlab).
    pub repository: String,
    /// An access token allowed to set commit statuses (and comment, with `comment`):
    /// GitHub `repo:status` (classic) or "Commit statuses: write" (fine-grained); GitLab
    /// `api` scope, Developer role; Gitea/Forgejo `write:repository` (and `write:issue`).
    pub token: SecretRef,
    /// Set a commit status per test (`<contextPrefix>/<test>`): pending when a run starts,
    /// its verdict when it ends. Default true.
    #[serde(default = "yes")]
    pub statuses: bool,
    /// Keep one comment on the merge request that brought the commit, with a table of the
    /// commit's tests, verdicts, p95 against the baseline and links, updated as runs end.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub comment: bool,
    /// The status context is `<contextPrefix>/<test>`.
    #[serde(default = "default_context_prefix")]
    pub context_prefix: String,
}

fn yes() -> bool {
    true
}

fn default_context_prefix() -> String {
    "perfsync".into()
}

impl ForgeConfig {
    /// The forge's name: `name`, else its kind.
    pub fn name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| self.kind.as_str().to_string())
    }

    /// The API base URL without a trailing `/`.
    pub fn api_url(&self) -> Option<String> {
        self.api_url
            .as_deref()
            .or(self.kind.default_api_url())
            .map(|u| u.trim_end_matches('/').to_string())
    }

    /// What a config file can get wrong, named by its key (`forges[i].…`).
    pub fn check(&self, i: usize) -> Result<(), String> {
        let key = format!("forges[{i}]");
        let name = self.name();
        if !is_name(&name) {
            return Err(format!(
                "{key}.name: `{name}` is not a name; use 1-63 lowercase letters, digits and `-`, e.g. `github` or `gitlab-internal`"
            ));
        }
        let Some(api) = self.api_url() else {
            return Err(format!(
                "{key}.apiUrl: a {} forge is self-hosted; give its API base URL, e.g. `https://git.example.com/api/v1`",
                self.kind.as_str()
            ));
        };
        match url::Url::parse(&api) {
            Ok(u) if (u.scheme() == "https" || u.scheme() == "http") && u.host().is_some() => {
                if !u.username().is_empty() || u.password().is_some() {
                    return Err(format!(
                        "{key}.apiUrl: put no credentials in the URL; the token goes in `token`"
                    ));
                }
            }
            _ => {
                return Err(format!(
                    "{key}.apiUrl: `{api}` is not an http(s) URL, e.g. `https://gitlab.example.com/api/v4`"
                ))
            }
        }
        let repo = self.repository.trim_matches('/');
        let parts: Vec<&str> = repo.split('/').collect();
        let ok = match self.kind {
            ForgeKind::Gitlab => {
                repo.chars().all(|c| c.is_ascii_digit()) && !repo.is_empty()
                    || (parts.len() >= 2 && parts.iter().all(|p| is_path_part(p)))
            }
            _ => parts.len() == 2 && parts.iter().all(|p| is_path_part(p)),
        };
        if !ok {
            let example = if self.kind == ForgeKind::Gitlab {
                "a project id such as `42` or a path such as `qa/load-tests`"
            } else {
                "`owner/repo`, e.g. `qa/load-tests`"
            };
            return Err(format!(
                "{key}.repository: `{}` is not {example}",
                self.repository
            ));
        }
        if self.context_prefix.is_empty()
            || self.context_prefix.len() > 64
            || self.context_prefix.chars().any(char::is_control)
        {
            return Err(format!(
                "{key}.contextPrefix: use 1-64 printable characters, e.g. `perfsync`"
            ));
        }
        if !self.statuses && !self.comment {
            return Err(format!(
                "{key}: with `statuses: false` and no `comment: true` this forge gets nothing; remove it or turn one on"
            ));
        }
        Ok(())
    }
}

/// A name in the outbox and the logs: 1-63 of `[a-z0-9-]`, not starting or ending with `-`.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_path_part(p: &str) -> bool {
    !p.is_empty()
        && p != "."
        && p != ".."
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Every forge checked, names unique.
pub fn check_all(forges: &[ForgeConfig]) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for (i, f) in forges.iter().enumerate() {
        f.check(i)?;
        if !seen.insert(f.name()) {
            return Err(format!(
                "forges[{i}].name: `{}` is used twice; give each forge of the same kind a `name`",
                f.name()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forge(kind: ForgeKind, repo: &str, api: Option<&str>) -> ForgeConfig {
        ForgeConfig {
            name: None,
            kind,
            api_url: api.map(str::to_string),
            repository: repo.into(),
            token: SecretRef {
                env: Some("T".into()),
                file: None,
            },
            statuses: true,
            comment: false,
            context_prefix: default_context_prefix(),
        }
    }

    #[test]
    fn defaults_and_checks_per_kind() {
        let g = forge(ForgeKind::Github, "qa/load-tests", None);
        assert_eq!(g.api_url().as_deref(), Some("https://api.github.com"));
        assert_eq!(g.check(0), Ok(()));
        let l = forge(ForgeKind::Gitlab, "group/sub/project", None);
        assert_eq!(l.api_url().as_deref(), Some("https://gitlab.com/api/v4"));
        assert_eq!(l.check(0), Ok(()));
        assert_eq!(forge(ForgeKind::Gitlab, "42", None).check(0), Ok(()));
        let e = forge(ForgeKind::Gitea, "qa/load-tests", None)
            .check(1)
            .unwrap_err();
        assert!(e.starts_with("forges[1].apiUrl"), "{e}");
        let ok = forge(
            ForgeKind::Forgejo,
            "qa/load-tests",
            Some("https://codeberg.org/api/v1/"),
        );
        assert_eq!(ok.api_url().as_deref(), Some("https://codeberg.org/api/v1"));
        assert_eq!(ok.check(0), Ok(()));
        for bad in ["qa", "qa/load/tests", "qa/../x", "qa/lo ad"] {
            assert!(
                forge(ForgeKind::Github, bad, None).check(0).is_err(),
                "{bad}"
            );
        }
        let creds = forge(
            ForgeKind::Gitea,
            "qa/x",
            Some("https://u:p@git.example.com/api/v1"),
        );
        assert!(creds.check(0).unwrap_err().contains("credentials"));
    }

    #[test]
    fn names_are_unique() {
        let a = forge(ForgeKind::Github, "qa/a", None);
        let b = forge(ForgeKind::Github, "qa/b", None);
        let e = check_all(&[a.clone(), b.clone()]).unwrap_err();
        assert!(e.contains("used twice"), "{e}");
        let b = ForgeConfig {
            name: Some("github-mirror".into()),
            ..b
        };
        assert_eq!(check_all(&[a, b]), Ok(()));
    }
}
