//! A k6 script as JavaScript reads it: parsed by a real parser (oxc), so escapes, regular
//! expression literals, template literals and comments are what the language says they are.
//! One pass collects what validation needs: the strings that hold URLs (constant expressions
//! folded: `+`, template literals, `const` names, `__ENV` values of the spec), the modules it
//! imports and the files it opens, `hosts` options, `testid`-like tags, and its `options`.
//!
//! [`check`] applies all of it to a test's bundle; [`options`] turns the options into the
//! VUs and duration k6 will run. Nothing here does I/O.

pub mod check;
mod collect;
pub mod options;
pub mod value;

use oxc_allocator::Allocator;
use oxc_parser::Parser;
use oxc_span::SourceType;

/// Why a script could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsError {
    /// The parser's first error, at a byte offset of the script.
    #[error("{message}")]
    Syntax { offset: usize, message: String },
    #[error("brackets and operators nest about {depth} levels deep around here, more than the {max} perfsync reads; split the expression or move data into a JSON file read with open()")]
    TooDeep {
        offset: usize,
        depth: usize,
        max: usize,
    },
    #[error("the script could not be read: {0}")]
    Reader(String),
}

impl JsError {
    pub fn offset(&self) -> usize {
        match self {
            JsError::Syntax { offset, .. } | JsError::TooDeep { offset, .. } => *offset,
            JsError::Reader(_) => 0,
        }
    }
}

/// How k6 reads a file: TypeScript by extension, CommonJS for `.cjs`, otherwise JavaScript,
/// an ES module when it imports or exports and a script when it does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    JavaScript,
    CommonJs,
    TypeScript,
}

impl Dialect {
    pub fn of(path: &str) -> Dialect {
        if [".ts", ".mts", ".cts"].iter().any(|e| path.ends_with(e)) {
            Dialect::TypeScript
        } else if path.ends_with(".cjs") {
            Dialect::CommonJs
        } else {
            Dialect::JavaScript
        }
    }

    fn source_type(self) -> SourceType {
        match self {
            Dialect::JavaScript => SourceType::unambiguous(),
            Dialect::CommonJs => SourceType::cjs(),
            Dialect::TypeScript => SourceType::ts(),
        }
    }
}

/// How a module is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    /// `import … from "x"`, `import "x"`.
    Import,
    /// `export … from "x"`.
    Export,
    /// `import(x)`.
    Dynamic,
    /// `require(x)`, `import x = require("x")`.
    Require,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModuleRef {
    /// `None`: built at run time.
    pub specifier: Option<String>,
    /// Byte offset of the specifier (inside its quotes for a literal).
    pub at: usize,
    pub kind: ModuleKind,
}

/// `open(path)`: a file k6 reads as data at init time.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenRef {
    /// `None`: built at run time.
    pub path: Option<String>,
    pub at: usize,
}

/// A string that may hold a URL, folded from its expression.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundString {
    pub pieces: Vec<value::Piece>,
    /// Where the expression starts and ends.
    pub at: usize,
    pub end: usize,
}

/// A tag key perfsync sets itself, set by the script.
#[derive(Debug, Clone, PartialEq)]
pub struct ReservedTag {
    /// The key, or `None` for a computed key that is not known before the run.
    pub key: Option<String>,
    pub at: usize,
}

/// The script's exported `options`, as far as they are known before the run.
#[derive(Debug, Clone, PartialEq)]
pub enum ScriptOptions {
    /// No `options` export: k6's defaults.
    Absent,
    /// An object literal; values not known before the run are [`value::Const::Unknown`].
    Literal(value::Obj),
    /// Something perfsync cannot follow (built by a function, changed after it is made,
    /// re-exported from another module).
    Unknown { at: usize, why: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub modules: Vec<ModuleRef>,
    pub opens: Vec<OpenRef>,
    pub strings: Vec<FoundString>,
    /// Where `hosts` (k6's name → address override) is set.
    pub hosts: Vec<usize>,
    pub reserved_tags: Vec<ReservedTag>,
    pub options: ScriptOptions,
}

/// `__ENV` as the spec sets it: name and value.
pub type Env = [(String, String)];

/// Tags perfsync and the k6-operator give every metric of a run; a script may not set them.
pub use crate::spec::checks::RESERVED_TAGS;

/// Reads a script. The parser and the passes over its tree recurse as deep as the script
/// nests, so a script that nests deeply (any file of a bundle may be hostile) is read on a
/// thread of its own with a stack sized for it, and one nesting beyond [`MAX_DEPTH`] is
/// refused unread.
pub fn analyze(text: &str, dialect: Dialect, env: &Env) -> Result<Analysis, JsError> {
    let (depth, deepest_at) = nesting(text);
    if depth > MAX_DEPTH {
        return Err(JsError::TooDeep {
            offset: deepest_at,
            depth,
            max: MAX_DEPTH,
        });
    }
    if depth <= INLINE_DEPTH {
        return analyze_here(text, dialect, env);
    }
    let owned_text = text.to_string();
    let owned_env = env.to_vec();
    let stack = STACK_BASE + depth * STACK_PER_LEVEL;
    std::thread::Builder::new()
        .name("perfsync-js".into())
        .stack_size(stack)
        .spawn(move || analyze_here(&owned_text, dialect, &owned_env))
        .map_err(|e| JsError::Reader(format!("no thread for a deeply nested script: {e}")))?
        .join()
        .map_err(|_| JsError::Reader("the reader stopped unexpectedly".into()))?
}

/// Scripts nesting at most this deep are read on the caller's stack (a Tokio worker has
/// 2 MiB; the parser takes up to about 1.2 KiB a level in a release build, the passes less).
const INLINE_DEPTH: usize = 128;
/// Deeper than this is refused: no k6 script nests like that, and the stack it would need
/// grows with it.
pub const MAX_DEPTH: usize = 100_000;
const STACK_BASE: usize = 8 << 20;
const STACK_PER_LEVEL: usize = 8 << 10;

/// Arenas above this size are not kept for the next script.
const KEEP_ARENA_BYTES: usize = 1 << 20;

thread_local! {
    /// The parser's arena, reused from one script to the next on the same thread.
    static ARENA: std::cell::RefCell<Option<Allocator>> = const { std::cell::RefCell::new(None) };
}

fn analyze_here(text: &str, dialect: Dialect, env: &Env) -> Result<Analysis, JsError> {
    let mut allocator = ARENA
        .with(|a| a.try_borrow_mut().ok().and_then(|mut a| a.take()))
        .unwrap_or_default();
    allocator.reset();
    let result = parse_and_collect(&allocator, text, dialect, env);
    if allocator.capacity() <= KEEP_ARENA_BYTES {
        ARENA.with(|a| {
            if let Ok(mut a) = a.try_borrow_mut() {
                *a = Some(allocator);
            }
        });
    }
    result
}

fn parse_and_collect(
    allocator: &Allocator,
    text: &str,
    dialect: Dialect,
    env: &Env,
) -> Result<Analysis, JsError> {
    let ret = Parser::new(allocator, text, dialect.source_type()).parse();
    if let Some(d) = ret.diagnostics.errors().next() {
        let offset = d
            .labels
            .iter()
            .find(|l| l.primary())
            .or_else(|| d.labels.first())
            .map_or(0, |l| l.offset() as usize);
        let mut message = d.message.to_string();
        if let Some(help) = &d.help {
            message.push_str(&format!(" ({help})"));
        }
        return Err(JsError::Syntax { offset, message });
    }
    if ret.panicked {
        return Err(JsError::Syntax {
            offset: 0,
            message: "the parser gave up".into(),
        });
    }
    Ok(collect::run(&ret.program, text, env))
}

/// An upper bound on how deep the parser and the passes over the tree will recurse, and where
/// it is reached. Every byte counts, inside strings and comments too (a fake string must not
/// hide real nesting): brackets open a level that closing returns from, leaving one level
/// behind (`f()()()` chains); operator characters, `.` and keywords that start nested
/// constructs add a level until the next `;` or `,` of the same bracket; statement keywords
/// (`if`, `else`, `for`, `while`, `do`, `with`) are never taken back within their bracket.
fn nesting(text: &str) -> (usize, usize) {
    #[derive(Clone, Copy)]
    struct Level {
        stmt: usize,
        expr: usize,
    }
    const OTHER: u8 = 0;
    const OPEN: u8 = 1;
    const CLOSE: u8 = 2;
    const RESET: u8 = 3;
    const OP: u8 = 4;
    const WORD: u8 = 5;
    const DIGIT: u8 = 6;
    const CLASS: [u8; 256] = {
        let mut t = [OTHER; 256];
        let mut c = 0;
        while c < 256 {
            let b = c as u8;
            t[c] = match b {
                b'(' | b'[' | b'{' => OPEN,
                b')' | b']' | b'}' => CLOSE,
                b';' | b',' => RESET,
                b'!' | b'~' | b'+' | b'-' | b'?' | b'=' | b':' | b'*' | b'/' | b'%' | b'&'
                | b'|' | b'^' | b'<' | b'>' | b'.' | b'@' => OP,
                b'a'..=b'z' | b'A'..=b'Z' | b'_' | b'$' => WORD,
                b'0'..=b'9' => DIGIT,
                _ => OTHER,
            };
            c += 1;
        }
        t
    };
    let b = text.as_bytes();
    let mut stack: Vec<Level> = Vec::new();
    let mut cur = Level { stmt: 0, expr: 0 };
    let (mut max, mut max_at) = (0, 0);
    let mut i = 0;
    while i < b.len() {
        let class = CLASS[b[i] as usize];
        match class {
            OPEN => {
                stack.push(cur);
                cur = Level {
                    stmt: cur.stmt + cur.expr + 1,
                    expr: 0,
                };
            }
            CLOSE => {
                if let Some(outer) = stack.pop() {
                    cur = outer;
                }
                cur.expr += 1;
            }
            RESET => cur.expr = 0,
            OP => cur.expr += 1,
            WORD => {
                let start = i;
                while i < b.len() && matches!(CLASS[b[i] as usize], WORD | DIGIT) {
                    i += 1;
                }
                // Only keywords that nest: checked by length first.
                if (2..=10).contains(&(i - start)) {
                    match &text[start..i] {
                        "if" | "else" | "for" | "while" | "do" | "with" => cur.stmt += 1,
                        "typeof" | "void" | "delete" | "await" | "new" | "yield" | "return"
                        | "throw" | "case" | "async" | "function" | "class" | "extends" | "in"
                        | "of" | "instanceof" | "let" | "const" | "var" | "keyof" | "is" => {
                            cur.expr += 1
                        }
                        _ => {}
                    }
                }
                if cur.stmt + cur.expr > max {
                    (max, max_at) = (cur.stmt + cur.expr, start);
                }
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        }
        if cur.stmt + cur.expr > max {
            (max, max_at) = (cur.stmt + cur.expr, i);
        }
        i += 1;
    }
    (max, max_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_small_for_ordinary_scripts_and_large_for_chains() {
        let ordinary = "import http from 'k6/http';\nexport const options = { vus: 2, stages: [{ duration: '1m', target: 10 }] };\nexport default function () {\n  if (__VU > 1) { http.get(`${__ENV.BASE}/x?a=1&b=2`); }\n}\n";
        assert!(nesting(ordinary).0 < 40, "{:?}", nesting(ordinary));
        for deep in [
            format!("x = {}1{};", "(".repeat(3000), ")".repeat(3000)),
            format!("x = {}1;", "- ".repeat(3000)),
            format!("x = f{};", "()".repeat(3000)),
            format!("x = a{};", ".b".repeat(3000)),
            format!("{}x;", "if (a) ".repeat(3000)),
            format!("x = {}1;", "'a' + ".repeat(3000)),
        ] {
            assert!(nesting(&deep).0 >= 3000, "{}", &deep[..20]);
        }
    }

    #[test]
    fn a_syntax_error_has_the_parsers_offset() {
        let e = analyze("const a = 1;\nconst = 2;\n", Dialect::JavaScript, &[]).unwrap_err();
        assert_eq!(e.offset(), 19, "{e:?}");
    }

    #[test]
    fn deeply_nested_scripts_are_read_on_a_thread_of_their_own_or_refused() {
        let deep = format!(
            "export default function () {{ http.get({}'https://evil.example/'{}); }}",
            "(".repeat(5000),
            ")".repeat(5000)
        );
        let a = analyze(&deep, Dialect::JavaScript, &[]).unwrap();
        assert_eq!(a.strings.len(), 1);
        let hostile = "(".repeat(MAX_DEPTH + 10);
        assert!(matches!(
            analyze(&hostile, Dialect::JavaScript, &[]),
            Err(JsError::TooDeep { .. })
        ));
    }
}
