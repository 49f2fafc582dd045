//! k6 threshold expressions: `p(95)<500`, `rate<0.01`, `count>=100`, on metrics and
//! sub-metrics such as `http_req_duration{expected_response:true}`.

use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Aggregate {
    Percentile(f64),
    Avg,
    Min,
    Max,
    Med,
    Rate,
    Count,
    Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub aggregate: Aggregate,
    pub op: Op,
    pub value: f64,
}

/// `http_req_duration{expected_response:true}` as name and tags.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MetricKey {
    pub name: String,
    pub tags: BTreeMap<String, String>,
}

impl Op {
    pub fn holds(self, actual: f64, limit: f64) -> bool {
        match self {
            Op::Lt => actual < limit,
            Op::Le => actual <= limit,
            Op::Gt => actual > limit,
            Op::Ge => actual >= limit,
            Op::Eq => actual == limit,
            Op::Ne => actual != limit,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }
}

impl fmt::Display for Aggregate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Aggregate::Percentile(p) => write!(f, "p({p})"),
            Aggregate::Avg => f.write_str("avg"),
            Aggregate::Min => f.write_str("min"),
            Aggregate::Max => f.write_str("max"),
            Aggregate::Med => f.write_str("med"),
            Aggregate::Rate => f.write_str("rate"),
            Aggregate::Count => f.write_str("count"),
            Aggregate::Value => f.write_str("value"),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.aggregate, self.op.as_str(), self.value)
    }
}

const HINT: &str = "write an aggregation, an operator and a number, e.g. `p(95)<500`, `avg<=200`, `rate<0.01` or `count>100`";

pub fn parse_expr(input: &str) -> Result<Expr, String> {
    let s: String = input.chars().filter(|c| !c.is_whitespace()).collect();
    let op_at = s
        .find(['<', '>', '=', '!'])
        .ok_or_else(|| format!("`{input}` has no comparison operator: {HINT}"))?;
    let (agg_text, rest) = s.split_at(op_at);
    let (op, value_text) = [
        ("===", Op::Eq),
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<", Op::Lt),
        (">", Op::Gt),
    ]
    .iter()
    .find_map(|(tok, op)| rest.strip_prefix(tok).map(|v| (*op, v)))
    .ok_or_else(|| format!("`{input}`: unknown operator: use <, <=, >, >=, == or !="))?;
    let aggregate = parse_aggregate(agg_text)
        .ok_or_else(|| format!("`{input}`: unknown aggregation `{agg_text}`: {HINT}"))?;
    let value: f64 = value_text
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite())
        .ok_or_else(|| format!("`{input}`: `{value_text}` is not a number: {HINT}"))?;
    Ok(Expr {
        aggregate,
        op,
        value,
    })
}

fn parse_aggregate(s: &str) -> Option<Aggregate> {
    Some(match s {
        "avg" => Aggregate::Avg,
        "min" => Aggregate::Min,
        "max" => Aggregate::Max,
        "med" => Aggregate::Med,
        "rate" => Aggregate::Rate,
        "count" => Aggregate::Count,
        "value" => Aggregate::Value,
        _ => {
            let inner = s.strip_prefix("p(")?.strip_suffix(')')?;
            let p: f64 = inner.parse().ok()?;
            if !(0.0..=100.0).contains(&p) {
                return None;
            }
            Aggregate::Percentile(p)
        }
    })
}

pub fn parse_metric_key(input: &str) -> Result<MetricKey, String> {
    let bad = |why: &str| format!("threshold metric `{input}`: {why}");
    let (name, tags_text) = match input.find('{') {
        Some(i) => {
            let inner = input[i + 1..]
                .strip_suffix('}')
                .ok_or_else(|| bad("a sub-metric selector must end with `}`"))?;
            (&input[..i], Some(inner))
        }
        None => (input, None),
    };
    let valid_name = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        return Err(bad(
            "a metric name is letters, digits and `_`, starting with a letter",
        ));
    }
    let mut tags = BTreeMap::new();
    if let Some(inner) = tags_text {
        for pair in inner.split(',').filter(|p| !p.trim().is_empty()) {
            let (k, v) = pair
                .split_once(':')
                .ok_or_else(|| bad("write sub-metric tags as `{tag:value}`"))?;
            let (k, v) = (k.trim(), v.trim().trim_matches(|c| c == '"' || c == '\''));
            if k.is_empty() {
                return Err(bad("a tag name is empty"));
            }
            tags.insert(k.to_string(), v.to_string());
        }
    }
    Ok(MetricKey {
        name: name.to_string(),
        tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_operator_and_aggregation() {
        let cases = [
            ("p(95)<500", Aggregate::Percentile(95.0), Op::Lt, 500.0),
            ("p(99.9) <= 1.5", Aggregate::Percentile(99.9), Op::Le, 1.5),
            ("avg>1", Aggregate::Avg, Op::Gt, 1.0),
            ("min>=0", Aggregate::Min, Op::Ge, 0.0),
            ("max==3", Aggregate::Max, Op::Eq, 3.0),
            ("med===3", Aggregate::Med, Op::Eq, 3.0),
            ("rate!=0", Aggregate::Rate, Op::Ne, 0.0),
            ("count>100", Aggregate::Count, Op::Gt, 100.0),
            ("value<10", Aggregate::Value, Op::Lt, 10.0),
        ];
        for (text, agg, op, value) in cases {
            assert_eq!(
                parse_expr(text).unwrap(),
                Expr {
                    aggregate: agg,
                    op,
                    value
                },
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_malformed_expressions() {
        for bad in [
            "p95<500", "p(101)<1", "avg", "avg<", "avg<x", "mean<3", "<5", "rate=>1", "p()<1",
        ] {
            assert!(parse_expr(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn parses_sub_metric_selectors() {
        let k =
            parse_metric_key("http_req_duration{expected_response:true, scenario:\"a\"}").unwrap();
        assert_eq!(k.name, "http_req_duration");
        assert_eq!(
            k.tags.get("expected_response").map(String::as_str),
            Some("true")
        );
        assert_eq!(k.tags.get("scenario").map(String::as_str), Some("a"));
        for bad in ["", "1abc", "a-b", "x{a}", "x{a:b"] {
            assert!(parse_metric_key(bad).is_err(), "{bad}");
        }
    }
}
