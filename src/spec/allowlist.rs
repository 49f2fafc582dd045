//! The policy's target allowlist: URL patterns and CIDRs, compared after normalisation so
//! that no spelling of a host (userinfo, case, trailing dot, IP literal forms, IDN) slips by.

use std::net::IpAddr;
use url::{Host, Url};

/// A URL reduced to what the policy compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub scheme: String,
    pub host: TargetHost,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetHost {
    /// Lowercase ASCII (IDN as punycode), without a trailing dot.
    Domain(String),
    Ip(IpAddr),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.host {
            TargetHost::Domain(d) => write!(f, "{}://{}:{}", self.scheme, d, self.port),
            TargetHost::Ip(IpAddr::V6(ip)) => write!(f, "{}://[{}]:{}", self.scheme, ip, self.port),
            TargetHost::Ip(ip) => write!(f, "{}://{}:{}", self.scheme, ip, self.port),
        }
    }
}

const SCHEMES: [&str; 4] = ["http", "https", "ws", "wss"];

/// Parses and normalises a target URL. The error says what is wrong with it.
pub fn normalize(raw: &str) -> Result<Target, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("`{raw}` is not a valid URL ({e})"))?;
    let scheme = url.scheme().to_string();
    if !SCHEMES.contains(&scheme.as_str()) {
        return Err(format!(
            "`{raw}` uses scheme `{scheme}`; targets must be http, https, ws or wss URLs"
        ));
    }
    let host = match url.host() {
        Some(Host::Domain(d)) => TargetHost::Domain(d.trim_end_matches('.').to_ascii_lowercase()),
        Some(Host::Ipv4(ip)) => TargetHost::Ip(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => {
            TargetHost::Ip(ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4))
        }
        None => return Err(format!("`{raw}` has no host")),
    };
    let port = url
        .port_or_known_default()
        .ok_or_else(|| format!("`{raw}` has no port and its scheme has no default"))?;
    Ok(Target { scheme, host, port })
}

#[derive(Debug, Clone, PartialEq)]
enum HostPattern {
    Exact(String),
    /// `*.example.com`: one or more labels before `.example.com` (stored with the leading dot).
    Suffix(String),
    Cidr(IpAddr, u8),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub raw: String,
    scheme: Option<String>,
    host: HostPattern,
    port: Option<u16>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Allowlist {
    rules: Vec<Rule>,
}

impl Allowlist {
    /// Parses every pattern; the error names the pattern and what is wrong with it.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Self, String> {
        let rules = patterns
            .iter()
            .map(|p| parse_rule(p.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Allowlist { rules })
    }

    pub fn allows(&self, target: &Target) -> bool {
        self.rules.iter().any(|r| rule_matches(r, target))
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// What the rules let a runner reach, for egress policies enforced at run time.
    pub fn egress(&self) -> Vec<EgressRule> {
        self.rules
            .iter()
            .map(|r| EgressRule {
                host: match &r.host {
                    HostPattern::Exact(d) => EgressHost::Name(d.clone()),
                    // Stored with its leading dot.
                    HostPattern::Suffix(s) => EgressHost::Suffix(s.trim_start_matches('.').into()),
                    HostPattern::Cidr(ip, p) => EgressHost::Cidr(*ip, *p),
                },
                port: r.port,
            })
            .collect()
    }
}

/// A destination the policy allows: a network, one name, or every name under a domain
/// (one or more labels before it), on `port` when the pattern gives one (else any port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressRule {
    pub host: EgressHost,
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressHost {
    Cidr(IpAddr, u8),
    Name(String),
    Suffix(String),
}

fn parse_rule(raw: &str) -> Result<Rule, String> {
    let bad = |why: &str| format!("allowed target `{raw}`: {why}");
    let trimmed = raw.trim();
    let (scheme, rest) = match trimmed.split_once("://") {
        Some((s, r)) => {
            let s = s.to_ascii_lowercase();
            if !SCHEMES.contains(&s.as_str()) {
                return Err(bad("the scheme must be http, https, ws or wss"));
            }
            (Some(s), r)
        }
        None => (None, trimmed),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    if authority.contains('@') {
        return Err(bad("userinfo is not allowed in a pattern"));
    }
    let (host, port) = split_port(authority).map_err(|e| bad(&e))?;
    if host.is_empty() {
        return Err(bad("the host is empty"));
    }
    let pattern = if let Some(suffix) = host.strip_prefix("*.") {
        match Host::parse(suffix) {
            Ok(Host::Domain(d)) => HostPattern::Suffix(format!(".{}", d.trim_end_matches('.'))),
            Ok(_) => return Err(bad("a wildcard must stand before a domain name, not an IP")),
            Err(e) => return Err(bad(&e.to_string())),
        }
    } else if host.contains('*') {
        return Err(bad(
            "`*` is only allowed as the first label, as in `*.example.com`",
        ));
    } else {
        let parsed = Host::parse(host).map_err(|e| bad(&e.to_string()))?;
        let ip = match parsed {
            // A path on a domain pattern is ignored: the policy is about hosts.
            Host::Domain(d) => HostPattern::Exact(d.trim_end_matches('.').to_string()),
            Host::Ipv4(ip) => HostPattern::Cidr(IpAddr::V4(ip), 32),
            Host::Ipv6(ip) => HostPattern::Cidr(
                ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4),
                if ip.to_ipv4_mapped().is_some() {
                    32
                } else {
                    128
                },
            ),
        };
        match (ip, path) {
            (HostPattern::Cidr(addr, full), Some(p)) if !p.is_empty() => {
                let prefix: u8 = p.parse().map_err(|_| {
                    bad("after an IP address, `/` must be followed by a prefix length")
                })?;
                if prefix > full {
                    return Err(bad(&format!("the prefix length must be at most {full}")));
                }
                HostPattern::Cidr(addr, prefix)
            }
            (other, _) => other,
        }
    };
    Ok(Rule {
        raw: raw.to_string(),
        scheme,
        host: pattern,
        port,
    })
}

fn split_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']').ok_or("an IPv6 address is missing its `]`")?;
        let host = &authority[..end + 2];
        let after = &rest[end + 1..];
        return match after.strip_prefix(':') {
            Some(p) => Ok((
                host,
                Some(p.parse().map_err(|_| "the port is not a number")?),
            )),
            None if after.is_empty() => Ok((host, None)),
            None => Err("unexpected text after the IPv6 address".into()),
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Ok((h, Some(p.parse().map_err(|_| "the port is not a number")?))),
        None => Ok((authority, None)),
    }
}

fn rule_matches(rule: &Rule, t: &Target) -> bool {
    if rule.scheme.as_deref().is_some_and(|s| s != t.scheme) {
        return false;
    }
    if rule.port.is_some_and(|p| p != t.port) {
        return false;
    }
    match (&rule.host, &t.host) {
        (HostPattern::Exact(h), TargetHost::Domain(d)) => h == d,
        (HostPattern::Suffix(s), TargetHost::Domain(d)) => {
            d.len() > s.len() && d.ends_with(s.as_str())
        }
        (HostPattern::Cidr(net, prefix), TargetHost::Ip(ip)) => in_cidr(*net, *prefix, *ip),
        _ => false,
    }
}

fn in_cidr(net: IpAddr, prefix: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(patterns: &[&str], url: &str) -> bool {
        let list = Allowlist::parse(patterns).unwrap();
        normalize(url).is_ok_and(|t| list.allows(&t))
    }

    #[test]
    fn host_globs_need_at_least_one_label_and_match_whole_labels() {
        let p = ["https://*.staging.example.com"];
        assert!(allowed(&p, "https://api.staging.example.com/x"));
        assert!(allowed(&p, "https://a.b.staging.example.com"));
        assert!(!allowed(&p, "https://staging.example.com"));
        assert!(!allowed(&p, "https://evilstaging.example.com"));
        assert!(!allowed(&p, "https://api.staging.example.com.evil.io/"));
        assert!(
            !allowed(&p, "http://api.staging.example.com"),
            "scheme must match"
        );
    }

    #[test]
    fn userinfo_case_and_trailing_dots_are_normalised() {
        let p = ["https://*.staging.example.com"];
        assert!(!allowed(&p, "https://api.staging.example.com@evil.io/"));
        assert!(allowed(&p, "https://evil.io@API.Staging.Example.COM./"));
    }

    #[test]
    fn ip_literals_in_any_spelling_match_cidrs() {
        let p = ["http://10.20.0.0/16", "127.0.0.1"];
        assert!(allowed(&p, "http://10.20.3.4:8080/"));
        assert!(allowed(&p, "http://0x0a.20.0.1/"), "hex");
        assert!(allowed(&p, "http://169082881/"), "decimal 10.20.0.1");
        assert!(
            !allowed(&p, "http://168034305/"),
            "decimal 10.4.0.1 is outside"
        );
        assert!(!allowed(&p, "http://10.21.0.1/"));
        assert!(allowed(&p, "http://[::ffff:10.20.1.1]/"), "v4-mapped v6");
        assert!(
            allowed(&p, "ws://2130706433:9000/"),
            "127.0.0.1 as a number, any scheme"
        );
        assert!(allowed(&p, "http://0177.0.0.1/"), "octal");
        assert!(!allowed(&p, "https://10.20.1.1/"), "scheme must match");
    }

    #[test]
    fn ports_and_default_ports() {
        let p = ["https://api.example.com:443", "http://[::1]:8080"];
        assert!(allowed(&p, "https://api.example.com/"));
        assert!(!allowed(&p, "https://api.example.com:8443/"));
        assert!(allowed(&p, "http://[0:0:0:0:0:0:0:1]:8080/"));
        assert!(!allowed(&p, "http://[::1]/"));
    }

    #[test]
    fn idn_hosts_compare_as_punycode() {
        let p = ["https://*.bücher.example"];
        assert!(allowed(&p, "https://shop.xn--bcher-kva.example/"));
        assert!(allowed(&p, "https://SHOP.BÜCHER.example/"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in [
            "ftp://x",
            "http://a*b.com",
            "http://10.0.0.0/33",
            "http://u@x",
            "http://x:y",
        ] {
            assert!(Allowlist::parse(&[bad]).is_err(), "{bad}");
        }
    }
}
