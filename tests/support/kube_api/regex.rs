//! The part of Go's RE2 syntax that CRD `pattern`s use: literals, `.`, classes (`[a-z0-9_]`,
//! `[^…]`, `\d`, `\w`, `\s`), groups (`(…)`, `(?:…)`), alternation, `?`, `*`, `+`, `{n,m}`,
//! `^` and `$`. Matching is a backtracking search, unanchored as Go's `MatchString` is. The
//! crate has no `regex` dependency, and the patterns are short.

#[derive(Debug, Clone)]
enum Node {
    Char(char),
    Any,
    Class {
        ranges: Vec<(char, char)>,
        negated: bool,
    },
    Start,
    End,
    Alt(Vec<Vec<Piece>>),
}

#[derive(Debug, Clone)]
struct Piece {
    node: Node,
    min: u32,
    max: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct Regex {
    root: Node,
}

struct Parser<'a> {
    chars: &'a [char],
    pos: usize,
}

fn class_escape(c: char) -> Option<(Vec<(char, char)>, bool)> {
    let digits = vec![('0', '9')];
    let word = vec![('0', '9'), ('A', 'Z'), ('a', 'z'), ('_', '_')];
    let space = vec![(' ', ' '), ('\t', '\r')];
    Some(match c {
        'd' => (digits, false),
        'D' => (digits, true),
        'w' => (word, false),
        'W' => (word, true),
        's' => (space, false),
        'S' => (space, true),
        _ => return None,
    })
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn alternation(&mut self) -> Result<Vec<Vec<Piece>>, String> {
        let mut alts = vec![self.sequence()?];
        while self.peek() == Some('|') {
            self.pos += 1;
            alts.push(self.sequence()?);
        }
        Ok(alts)
    }

    fn sequence(&mut self) -> Result<Vec<Piece>, String> {
        let mut seq = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let node = self.atom()?;
            let (min, max) = self.quantifier()?;
            seq.push(Piece { node, min, max });
        }
        Ok(seq)
    }

    fn atom(&mut self) -> Result<Node, String> {
        let c = self.peek().ok_or("unexpected end")?;
        self.pos += 1;
        Ok(match c {
            '.' => Node::Any,
            '^' => Node::Start,
            '$' => Node::End,
            '(' => {
                if self.chars[self.pos..].starts_with(&['?', ':']) {
                    self.pos += 2;
                }
                let alts = self.alternation()?;
                if self.peek() != Some(')') {
                    return Err("missing )".into());
                }
                self.pos += 1;
                Node::Alt(alts)
            }
            '[' => self.class()?,
            '\\' => {
                let e = self.peek().ok_or("trailing backslash")?;
                self.pos += 1;
                match class_escape(e) {
                    Some((ranges, negated)) => Node::Class { ranges, negated },
                    None => Node::Char(escaped(e)),
                }
            }
            c => Node::Char(c),
        })
    }

    fn class(&mut self) -> Result<Node, String> {
        let mut negated = false;
        if self.peek() == Some('^') {
            negated = true;
            self.pos += 1;
        }
        let mut ranges = Vec::new();
        let mut first = true;
        loop {
            let c = self.peek().ok_or("missing ]")?;
            self.pos += 1;
            if c == ']' && !first {
                break;
            }
            first = false;
            let lo = if c == '\\' {
                let e = self.peek().ok_or("trailing backslash")?;
                self.pos += 1;
                if let Some((r, false)) = class_escape(e) {
                    ranges.extend(r);
                    continue;
                }
                escaped(e)
            } else {
                c
            };
            if self.peek() == Some('-') && self.chars.get(self.pos + 1).is_some_and(|&n| n != ']') {
                self.pos += 1;
                let mut hi = self.peek().ok_or("missing ]")?;
                self.pos += 1;
                if hi == '\\' {
                    hi = escaped(self.peek().ok_or("trailing backslash")?);
                    self.pos += 1;
                }
                ranges.push((lo, hi));
            } else {
                ranges.push((lo, lo));
            }
        }
        Ok(Node::Class { ranges, negated })
    }

    fn quantifier(&mut self) -> Result<(u32, Option<u32>), String> {
        let q = match self.peek() {
            Some('?') => (0, Some(1)),
            Some('*') => (0, None),
            Some('+') => (1, None),
            Some('{') => {
                let rest: String = self.chars[self.pos + 1..].iter().collect();
                let Some(end) = rest.find('}') else {
                    return Ok((1, Some(1)));
                };
                let body = &rest[..end];
                let parse = |s: &str| s.trim().parse::<u32>().map_err(|e| e.to_string());
                let q = match body.split_once(',') {
                    None => {
                        let n = parse(body)?;
                        (n, Some(n))
                    }
                    Some((a, "")) => (parse(a)?, None),
                    Some((a, b)) => (parse(a)?, Some(parse(b)?)),
                };
                self.pos += end + 1;
                q
            }
            _ => return Ok((1, Some(1))),
        };
        self.pos += 1;
        // A lazy `?` changes which match is found, not whether one is.
        if self.peek() == Some('?') {
            self.pos += 1;
        }
        Ok(q)
    }
}

fn escaped(e: char) -> char {
    match e {
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        other => other,
    }
}

type Cont<'a> = &'a mut dyn FnMut(usize) -> bool;

fn match_seq(seq: &[Piece], s: &[char], i: usize, k: Cont) -> bool {
    match seq.split_first() {
        None => k(i),
        Some((p, rest)) => match_piece(p, 0, s, i, &mut |j| match_seq(rest, s, j, &mut *k)),
    }
}

fn match_piece(p: &Piece, count: u32, s: &[char], i: usize, k: Cont) -> bool {
    if p.max.is_none_or(|m| count < m) {
        let more = match_node(&p.node, s, i, &mut |j| {
            // An empty iteration past the minimum would loop forever.
            if j == i && count >= p.min {
                return false;
            }
            match_piece(p, count + 1, s, j, &mut *k)
        });
        if more {
            return true;
        }
    }
    count >= p.min && k(i)
}

fn match_node(n: &Node, s: &[char], i: usize, k: Cont) -> bool {
    match n {
        Node::Char(c) => i < s.len() && s[i] == *c && k(i + 1),
        Node::Any => i < s.len() && s[i] != '\n' && k(i + 1),
        Node::Class { ranges, negated } => {
            i < s.len()
                && ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&s[i])) != *negated
                && k(i + 1)
        }
        Node::Start => i == 0 && k(i),
        Node::End => i == s.len() && k(i),
        Node::Alt(alts) => alts.iter().any(|seq| match_seq(seq, s, i, &mut *k)),
    }
}

impl Regex {
    pub fn new(pattern: &str) -> Result<Regex, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut p = Parser {
            chars: &chars,
            pos: 0,
        };
        let alts = p.alternation()?;
        if p.pos != chars.len() {
            return Err(format!("unexpected ) at {}", p.pos));
        }
        Ok(Regex {
            root: Node::Alt(alts),
        })
    }

    /// Whether the pattern matches anywhere in `text` (anchor with `^…$` for the whole).
    pub fn is_match(&self, text: &str) -> bool {
        let s: Vec<char> = text.chars().collect();
        (0..=s.len()).any(|start| match_node(&self.root, &s, start, &mut |_| true))
    }
}
