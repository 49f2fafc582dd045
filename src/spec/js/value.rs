//! What a script's expression is known to be before the run: the constant fold of literals,
//! `+`, template literals, `const` names and `__ENV` values from the spec, with what is not
//! known kept as such (never guessed).

/// A piece of a string value.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// Known text; `src` is the byte offset in the script where it is written character for
    /// character (a literal without escapes), so that a finding can point inside it.
    Text { text: String, src: Option<usize> },
    /// The value of `__ENV.<name>` from the spec's `env`.
    Env { name: String, value: String },
    /// Known only at run time.
    Unknown,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Const {
    Str(Vec<Piece>),
    Num(f64),
    Bool(bool),
    Null,
    Undefined,
    Arr(Vec<Item>),
    Obj(Obj),
    Unknown,
}

/// An array element and where it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub value: Const,
    pub at: usize,
}

/// An object literal.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Obj {
    pub props: Vec<Prop>,
    /// The last spread (`...x`) or computed key not known before the run: how many
    /// properties come before it, and where it stands. Any key may be set there.
    pub open: Option<(usize, usize)>,
    /// Where the object literal starts.
    pub at: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Prop {
    pub key: String,
    pub value: Const,
    /// Where the property's key is written.
    pub at: usize,
}

/// A key of an object, as [`Obj::get`] finds it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Field<'c> {
    /// Not set (k6 uses its default).
    Unset,
    Set(&'c Const, usize),
    /// Maybe set, to something not known before the run.
    Unknown(usize),
}

impl Obj {
    /// The last property named `key` (a later one wins in JavaScript), or whether a spread
    /// after it may hide it.
    pub fn get(&self, key: &str) -> Field<'_> {
        match (self.props.iter().rposition(|p| p.key == key), self.open) {
            (Some(i), Some((before, at))) if before > i => Field::Unknown(at),
            (Some(i), _) => Field::Set(&self.props[i].value, self.props[i].at),
            (None, Some((_, at))) => Field::Unknown(at),
            (None, None) => Field::Unset,
        }
    }
}

impl Const {
    pub fn text(text: impl Into<String>, src: Option<usize>) -> Const {
        Const::Str(vec![Piece::Text {
            text: text.into(),
            src,
        }])
    }

    /// `String(value)`, as far as it is known.
    pub fn to_pieces(&self) -> Vec<Piece> {
        let text = |t: String| vec![Piece::Text { text: t, src: None }];
        match self {
            Const::Str(p) => p.clone(),
            Const::Num(n) => text(number_to_string(*n)),
            Const::Bool(b) => text(b.to_string()),
            Const::Null => text("null".into()),
            Const::Undefined => text("undefined".into()),
            Const::Arr(_) | Const::Obj(_) | Const::Unknown => vec![Piece::Unknown],
        }
    }

    /// The whole string, when every piece of it is known.
    pub fn as_str(&self) -> Option<String> {
        let Const::Str(pieces) = self else {
            return None;
        };
        let mut out = String::new();
        for p in pieces {
            match p {
                Piece::Text { text, .. } => out.push_str(text),
                Piece::Env { value, .. } => out.push_str(value),
                Piece::Unknown => return None,
            }
        }
        Some(out)
    }

    /// JavaScript truthiness, when it is known.
    pub fn truthy(&self) -> Option<bool> {
        match self {
            Const::Str(pieces) => {
                let known_text = pieces.iter().any(|p| match p {
                    Piece::Text { text, .. } => !text.is_empty(),
                    Piece::Env { value, .. } => !value.is_empty(),
                    Piece::Unknown => false,
                });
                if known_text {
                    Some(true)
                } else if pieces.iter().any(|p| matches!(p, Piece::Unknown)) {
                    None
                } else {
                    Some(false)
                }
            }
            Const::Num(n) => Some(*n != 0.0 && !n.is_nan()),
            Const::Bool(b) => Some(*b),
            Const::Null | Const::Undefined => Some(false),
            Const::Arr(_) | Const::Obj(_) => Some(true),
            Const::Unknown => None,
        }
    }

    /// `Number(value)`, when it is known.
    pub fn to_number(&self) -> Option<f64> {
        match self {
            Const::Num(n) => Some(*n),
            Const::Bool(b) => Some(f64::from(u8::from(*b))),
            Const::Null => Some(0.0),
            Const::Str(_) => {
                let s = self.as_str()?;
                let t = s.trim();
                if t.is_empty() {
                    Some(0.0)
                } else {
                    t.parse::<f64>().ok()
                }
            }
            _ => None,
        }
    }
}

/// Concatenation of two string values.
pub fn concat(mut a: Vec<Piece>, b: Vec<Piece>) -> Vec<Piece> {
    for p in b {
        match p {
            Piece::Text { ref text, .. } if text.is_empty() => {}
            Piece::Unknown if matches!(a.last(), Some(Piece::Unknown)) => {}
            p => a.push(p),
        }
    }
    a
}

/// A number as JavaScript prints it, for the values scripts put in URLs (integers, mostly).
pub fn number_to_string(n: f64) -> String {
    if n.is_nan() {
        "NaN".into()
    } else if n.is_infinite() {
        if n > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else if n == n.trunc() && n.abs() < 1e21 {
        format!("{}", n as i128)
    } else {
        format!("{n}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_fold_and_unknowns_stay_unknown() {
        let a = Const::text("https://", None);
        let b = Const::Num(8080.0);
        let joined = Const::Str(concat(a.to_pieces(), b.to_pieces()));
        assert_eq!(joined.as_str().as_deref(), Some("https://8080"));
        let open = Const::Str(concat(a.to_pieces(), Const::Unknown.to_pieces()));
        assert_eq!(open.as_str(), None);
        assert_eq!(open.truthy(), Some(true));
        assert_eq!(Const::Str(vec![Piece::Unknown]).truthy(), None);
        assert_eq!(Const::text("", None).truthy(), Some(false));
        assert_eq!(Const::text(" 42 ", None).to_number(), Some(42.0));
        assert_eq!(number_to_string(1.5), "1.5");
        assert_eq!(number_to_string(-3.0), "-3");
    }

    #[test]
    fn a_spread_may_hide_any_key() {
        let obj = Obj {
            props: vec![Prop {
                key: "vus".into(),
                value: Const::Num(1.0),
                at: 3,
            }],
            open: Some((0, 9)),
            at: 0,
        };
        // `{ ...base, vus: 1 }`: the written key wins; any other may come from `base`.
        assert_eq!(obj.get("vus"), Field::Set(&Const::Num(1.0), 3));
        assert_eq!(obj.get("duration"), Field::Unknown(9));
        // `{ vus: 1, ...base }`: `base` may replace it.
        let later = Obj {
            open: Some((1, 9)),
            ..obj
        };
        assert_eq!(later.get("vus"), Field::Unknown(9));
    }
}
