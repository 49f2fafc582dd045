//! The passes over a parsed script. First the names it binds (how often each, and which name
//! is exported as `options`), then the values of its single-binding `const`s and of its
//! options, then everything validation asks about. Folding is JavaScript's own: a string is
//! the concatenation of what `+`, template literals and `String()` make of their parts; a
//! part that is not known before the run stays unknown.

use super::value::{concat, Const, Item, Obj, Piece, Prop};
use super::{
    Analysis, Env, FoundString, ModuleKind, ModuleRef, OpenRef, ReservedTag, ScriptOptions,
    RESERVED_TAGS,
};
use oxc_ast::ast::*;
use oxc_ast_visit::{walk, Visit};
use oxc_span::GetSpan;
use std::collections::HashMap;

/// Deeper folds stop and leave the rest to be read as an expression of its own.
const MAX_FOLD_DEPTH: usize = 1000;

pub(super) fn run<'a>(program: &Program<'a>, text: &'a str, env: &Env) -> Analysis {
    let mut names = Names::default();
    names.visit_program(program);
    let mut folder = Folder {
        text,
        env,
        counts: names.counts,
        consts: HashMap::new(),
    };
    let mut values = Values {
        folder: &mut folder,
    };
    values.visit_program(program);
    // The options: the module-level declaration of the name exported as `options` (a
    // function's own `options` is another binding).
    let options_value = names.options.and_then(|(local, _)| {
        let init = module_init(program, local)?;
        let v = folder.fold(init, Mode::Value, &mut Vec::new(), 0);
        let span = init.span();
        Some((v, (span.start as usize, span.end as usize)))
    });
    let mut c = Collector {
        folder: &folder,
        options_local: names.options.map(|(n, _)| n),
        options_span: options_value.as_ref().map(|(_, span)| *span),
        options_changed: None,
        commonjs_options: None,
        shadowed: 0,
        out: Analysis {
            modules: Vec::new(),
            opens: Vec::new(),
            strings: Vec::new(),
            hosts: Vec::new(),
            reserved_tags: Vec::new(),
            options: ScriptOptions::Absent,
        },
    };
    c.visit_program(program);
    let options = match (
        names.options,
        options_value,
        c.options_changed,
        names.elsewhere,
    ) {
        (_, _, Some((at, why)), _) => ScriptOptions::Unknown { at, why },
        (Some(_), Some((Const::Obj(obj), _)), None, _) => ScriptOptions::Literal(obj),
        (Some((_, at)), Some(_), None, _) => ScriptOptions::Unknown {
            at,
            why: "`options` is not an object literal".into(),
        },
        (Some((_, at)), None, None, _) => ScriptOptions::Unknown {
            at,
            why: "`options` is not given a value where it is declared".into(),
        },
        (None, _, None, Some(at)) => ScriptOptions::Unknown {
            at,
            why: "`options` may come from another module (`export … from`)".into(),
        },
        (None, _, None, None) => match c.commonjs_options {
            Some(at) => ScriptOptions::Unknown {
                at,
                why: "`options` is set through `module.exports`/`exports`".into(),
            },
            None => ScriptOptions::Absent,
        },
    };
    c.out.options = options;
    c.out
}

/// First pass: how often each name is bound, and which local name is exported as `options`.
#[derive(Default)]
struct Names<'a> {
    counts: HashMap<&'a str, u32>,
    /// The local name exported as `options`, and where.
    options: Option<(&'a str, usize)>,
    /// Where a re-export may bring in `options` from another module.
    elsewhere: Option<usize>,
}

impl<'a> Visit<'a> for Names<'a> {
    fn visit_binding_identifier(&mut self, it: &BindingIdentifier<'a>) {
        *self.counts.entry(it.name.as_str()).or_default() += 1;
    }

    fn visit_export_declaration(&mut self, it: &ExportDeclaration<'a>) {
        if let Declaration::VariableDeclaration(v) = &it.declaration {
            for d in &v.declarations {
                if let BindingPattern::BindingIdentifier(id) = &d.id {
                    if id.name == "options" {
                        self.options = Some(("options", d.span.start as usize));
                    }
                }
            }
        }
        walk::walk_export_declaration(self, it);
    }

    fn visit_export_named_declaration(&mut self, it: &ExportNamedDeclaration<'a>) {
        for s in &it.specifiers {
            if s.exported.name() == "options" {
                if let ModuleExportName::IdentifierReference(local) = &s.local {
                    self.options = Some((local.name.as_str(), s.span.start as usize));
                }
            }
        }
        walk::walk_export_named_declaration(self, it);
    }

    fn visit_export_from_declaration(&mut self, it: &ExportFromDeclaration<'a>) {
        if it.specifiers.iter().any(|s| s.exported.name() == "options") {
            self.elsewhere = Some(it.span.start as usize);
        }
    }

    fn visit_export_all_declaration(&mut self, it: &ExportAllDeclaration<'a>) {
        if it.exported.is_none() {
            self.elsewhere.get_or_insert(it.span.start as usize);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A string is built: objects, arrays and functions are left to the visitor.
    String,
    /// A value is read (the options): objects and arrays are folded too.
    Value,
}

/// Folds expressions with what the script binds once as a `const` and what the spec's `env`
/// holds.
struct Folder<'t, 'e> {
    text: &'t str,
    env: &'e Env,
    counts: HashMap<&'t str, u32>,
    consts: HashMap<&'t str, Const>,
}

impl<'t> Folder<'t, '_> {
    fn bound_once(&self, name: &str) -> bool {
        self.counts.get(name) == Some(&1)
    }

    fn env_value(&self, name: &str) -> Const {
        match self.env.iter().find(|(k, _)| k == name) {
            Some((k, v)) => Const::Str(vec![Piece::Env {
                name: k.clone(),
                value: v.clone(),
            }]),
            None => Const::Unknown,
        }
    }

    /// `__ENV.NAME` or `__ENV["NAME"]`, unless the script binds `__ENV` itself.
    fn env_member(&self, m: &MemberExpression<'_>) -> Option<Const> {
        let Expression::Identifier(obj) = m.object() else {
            return None;
        };
        if obj.name != "__ENV" || self.counts.contains_key("__ENV") {
            return None;
        }
        Some(match m.static_property_name() {
            Some(name) => self.env_value(name),
            None => Const::Unknown,
        })
    }

    /// Whether a string literal is written as its value (no escapes), so offsets map 1:1.
    fn plain(&self, lit: &StringLiteral<'_>) -> Option<usize> {
        let start = lit.span.start as usize + 1;
        let end = (lit.span.end as usize).saturating_sub(1);
        (self.text.get(start..end) == Some(lit.value.as_str())).then_some(start)
    }

    fn fold<'x>(
        &self,
        e: &'x Expression<'t>,
        mode: Mode,
        opaque: &mut Vec<&'x Expression<'t>>,
        depth: usize,
    ) -> Const {
        if depth > MAX_FOLD_DEPTH {
            opaque.push(e);
            return Const::Unknown;
        }
        let d = depth + 1;
        match e {
            Expression::StringLiteral(s) => Const::text(s.value.as_str(), self.plain(s)),
            Expression::NumericLiteral(n) => Const::Num(n.value),
            Expression::BooleanLiteral(b) => Const::Bool(b.value),
            Expression::NullLiteral(_) => Const::Null,
            Expression::TemplateLiteral(t) => Const::Str(self.template(t, false, opaque, d)),
            Expression::ParenthesizedExpression(p) => self.fold(&p.expression, mode, opaque, d),
            Expression::TSAsExpression(x) => self.fold(&x.expression, mode, opaque, d),
            Expression::TSSatisfiesExpression(x) => self.fold(&x.expression, mode, opaque, d),
            Expression::TSNonNullExpression(x) => self.fold(&x.expression, mode, opaque, d),
            Expression::TSTypeAssertion(x) => self.fold(&x.expression, mode, opaque, d),
            Expression::Identifier(id) => {
                if id.name == "undefined" && !self.counts.contains_key("undefined") {
                    Const::Undefined
                } else {
                    self.consts
                        .get(id.name.as_str())
                        .cloned()
                        .unwrap_or(Const::Unknown)
                }
            }
            Expression::StaticMemberExpression(_) | Expression::ComputedMemberExpression(_) => {
                match e.as_member_expression().and_then(|m| self.env_member(m)) {
                    Some(v) => {
                        if let Expression::ComputedMemberExpression(c) = e {
                            // `__ENV[expr]`: the key's own strings still count.
                            opaque.push(&c.expression);
                        }
                        v
                    }
                    None => {
                        opaque.push(e);
                        Const::Unknown
                    }
                }
            }
            Expression::BinaryExpression(b) => match b.operator {
                BinaryOperator::Addition => {
                    let l = self.fold(&b.left, Mode::String, opaque, d);
                    let r = self.fold(&b.right, Mode::String, opaque, d);
                    match (&l, &r) {
                        (Const::Str(_), _) | (_, Const::Str(_)) => {
                            Const::Str(concat(l.to_pieces(), r.to_pieces()))
                        }
                        (Const::Num(a), Const::Num(b)) => Const::Num(a + b),
                        _ => Const::Unknown,
                    }
                }
                BinaryOperator::Subtraction
                | BinaryOperator::Multiplication
                | BinaryOperator::Division => {
                    let (l, lo) = self.tentative(&b.left, d);
                    let (r, ro) = self.tentative(&b.right, d);
                    match (&l, &r) {
                        (Const::Num(x), Const::Num(y)) => {
                            opaque.extend(lo);
                            opaque.extend(ro);
                            Const::Num(match b.operator {
                                BinaryOperator::Subtraction => x - y,
                                BinaryOperator::Multiplication => x * y,
                                _ => x / y,
                            })
                        }
                        _ => {
                            opaque.push(&b.left);
                            opaque.push(&b.right);
                            Const::Unknown
                        }
                    }
                }
                _ => {
                    opaque.push(&b.left);
                    opaque.push(&b.right);
                    Const::Unknown
                }
            },
            Expression::UnaryExpression(u) => {
                let (v, vo) = self.tentative(&u.argument, d);
                let out = match (u.operator, &v) {
                    (UnaryOperator::UnaryNegation, Const::Num(n)) => Some(Const::Num(-n)),
                    (UnaryOperator::UnaryPlus, Const::Num(n)) => Some(Const::Num(*n)),
                    (
                        UnaryOperator::LogicalNot,
                        Const::Num(_) | Const::Bool(_) | Const::Null | Const::Undefined,
                    ) => v.truthy().map(|t| Const::Bool(!t)),
                    _ => None,
                };
                match out {
                    Some(c) => {
                        opaque.extend(vo);
                        c
                    }
                    // Whatever it was, its strings are read on their own.
                    None => {
                        opaque.push(&u.argument);
                        Const::Unknown
                    }
                }
            }
            Expression::LogicalExpression(l) => {
                let (left, lo) = self.tentative_mode(&l.left, mode, d);
                let pick_left = match l.operator {
                    LogicalOperator::Or => left.truthy(),
                    LogicalOperator::And => left.truthy().map(|t| !t),
                    LogicalOperator::Coalesce => match left {
                        Const::Null | Const::Undefined => Some(false),
                        Const::Unknown => None,
                        _ => Some(true),
                    },
                };
                match pick_left {
                    Some(true) => {
                        opaque.extend(lo);
                        opaque.push(&l.right);
                        left
                    }
                    Some(false) => {
                        opaque.push(&l.left);
                        self.fold(&l.right, mode, opaque, d)
                    }
                    None => {
                        opaque.push(&l.left);
                        opaque.push(&l.right);
                        Const::Unknown
                    }
                }
            }
            Expression::ConditionalExpression(c) => {
                let (test, _) = self.tentative(&c.test, d);
                opaque.push(&c.test);
                match test.truthy() {
                    Some(true) => {
                        opaque.push(&c.alternate);
                        self.fold(&c.consequent, mode, opaque, d)
                    }
                    Some(false) => {
                        opaque.push(&c.consequent);
                        self.fold(&c.alternate, mode, opaque, d)
                    }
                    None => {
                        opaque.push(&c.consequent);
                        opaque.push(&c.alternate);
                        Const::Unknown
                    }
                }
            }
            Expression::SequenceExpression(s) => {
                let Some((last, rest)) = s.expressions.split_last() else {
                    return Const::Unknown;
                };
                opaque.extend(rest.iter());
                self.fold(last, mode, opaque, d)
            }
            Expression::CallExpression(call) => self.call(call, e, opaque, d),
            Expression::TaggedTemplateExpression(t) if is_string_raw(&t.tag) => {
                Const::Str(self.template(&t.quasi, true, opaque, d))
            }
            Expression::ArrayExpression(a) if mode == Mode::Value => {
                let mut items = Vec::new();
                for el in &a.elements {
                    match el {
                        ArrayExpressionElement::SpreadElement(s) => {
                            opaque.push(&s.argument);
                            return Const::Unknown;
                        }
                        ArrayExpressionElement::Elision(_) => items.push(Item {
                            value: Const::Undefined,
                            at: el.span().start as usize,
                        }),
                        _ => {
                            if let Some(x) = el.as_expression() {
                                items.push(Item {
                                    value: self.fold(x, mode, opaque, d),
                                    at: x.span().start as usize,
                                });
                            }
                        }
                    }
                }
                Const::Arr(items)
            }
            Expression::ObjectExpression(o) if mode == Mode::Value => {
                let mut obj = Obj {
                    props: Vec::new(),
                    open: None,
                    at: o.span.start as usize,
                };
                for p in &o.properties {
                    match p {
                        ObjectPropertyKind::SpreadProperty(s) => {
                            let v = self.fold(&s.argument, mode, opaque, d);
                            match v {
                                Const::Obj(inner) => {
                                    if let Some(open) = inner.open {
                                        obj.open = Some((obj.props.len(), open.1));
                                    }
                                    obj.props.extend(inner.props);
                                }
                                Const::Null | Const::Undefined => {}
                                _ => obj.open = Some((obj.props.len(), s.span.start as usize)),
                            }
                        }
                        ObjectPropertyKind::ObjectProperty(p) => {
                            let key = if p.computed {
                                p.key
                                    .as_expression()
                                    .map(|k| self.fold(k, Mode::String, opaque, d))
                                    .and_then(|k| k.as_str())
                            } else {
                                p.key.static_name().map(|k| k.into_owned())
                            };
                            let at = p.key.span().start as usize;
                            let Some(key) = key else {
                                obj.open = Some((obj.props.len(), at));
                                continue;
                            };
                            let value = if p.kind == PropertyKind::Init && !p.method {
                                self.fold(&p.value, mode, opaque, d)
                            } else {
                                opaque.push(&p.value);
                                Const::Unknown
                            };
                            obj.props.push(Prop { key, value, at });
                        }
                    }
                }
                Const::Obj(obj)
            }
            _ => {
                opaque.push(e);
                Const::Unknown
            }
        }
    }

    /// Folds `e` on trial: its value, and what would have to be read on its own if the value
    /// is used. A caller that drops the value reads `e` itself instead, so no string in it
    /// goes unread.
    fn tentative<'x>(
        &self,
        e: &'x Expression<'t>,
        depth: usize,
    ) -> (Const, Vec<&'x Expression<'t>>) {
        self.tentative_mode(e, Mode::String, depth)
    }

    fn tentative_mode<'x>(
        &self,
        e: &'x Expression<'t>,
        mode: Mode,
        depth: usize,
    ) -> (Const, Vec<&'x Expression<'t>>) {
        let mut opaque = Vec::new();
        let v = self.fold(e, mode, &mut opaque, depth);
        (v, opaque)
    }

    fn template<'x>(
        &self,
        t: &'x TemplateLiteral<'t>,
        raw: bool,
        opaque: &mut Vec<&'x Expression<'t>>,
        depth: usize,
    ) -> Vec<Piece> {
        let mut pieces = Vec::new();
        for (i, q) in t.quasis.iter().enumerate() {
            let text = match (&q.value.cooked, raw) {
                (Some(c), false) => c.as_str(),
                _ => q.value.raw.as_str(),
            };
            let start = q.span.start as usize;
            let src = (self.text.get(start..start + text.len()) == Some(text)).then_some(start);
            pieces = concat(
                pieces,
                vec![Piece::Text {
                    text: text.to_string(),
                    src,
                }],
            );
            if let Some(x) = t.expressions.get(i) {
                let v = self.fold(x, Mode::String, opaque, depth);
                pieces = concat(pieces, v.to_pieces());
            }
        }
        pieces
    }

    fn call<'x>(
        &self,
        call: &'x CallExpression<'t>,
        e: &'x Expression<'t>,
        opaque: &mut Vec<&'x Expression<'t>>,
        d: usize,
    ) -> Const {
        let args: Vec<&'x Expression<'t>> = call
            .arguments
            .iter()
            .filter_map(|a| a.as_expression())
            .collect();
        let spread = args.len() != call.arguments.len();
        match &call.callee {
            // String(x), Number(x), parseInt(x), parseFloat(x)
            Expression::Identifier(f)
                if !spread
                    && !self.counts.contains_key(f.name.as_str())
                    && matches!(
                        f.name.as_str(),
                        "String" | "Number" | "parseInt" | "parseFloat"
                    ) =>
            {
                opaque.extend(args.iter().skip(1));
                let Some(first) = args.first() else {
                    return match f.name.as_str() {
                        "String" => Const::text("", None),
                        "Number" => Const::Num(0.0),
                        _ => Const::Num(f64::NAN),
                    };
                };
                if f.name == "String" {
                    return Const::Str(self.fold(first, Mode::String, opaque, d).to_pieces());
                }
                // The number is kept; the text it was read from is read on its own.
                let (v, _) = self.tentative(first, d);
                opaque.push(first);
                match v.to_number() {
                    Some(n) if f.name == "parseInt" => Const::Num(n.trunc()),
                    Some(n) => Const::Num(n),
                    None => Const::Unknown,
                }
            }
            // "a".concat(b, …) and [a, b].join(sep)
            Expression::StaticMemberExpression(m)
                if !spread && matches!(m.property.name.as_str(), "concat" | "join") =>
            {
                let (recv, ro) = self.tentative_mode(&m.object, Mode::Value, d);
                // Only strings, numbers and the like join: an object's strings would be lost.
                let used = match (m.property.name.as_str(), &recv) {
                    ("concat", Const::Str(_)) => true,
                    ("join", Const::Arr(items)) => items
                        .iter()
                        .all(|i| !matches!(i.value, Const::Obj(_) | Const::Arr(_))),
                    _ => false,
                };
                if used {
                    opaque.extend(ro);
                } else {
                    opaque.push(&m.object);
                }
                match (m.property.name.as_str(), recv) {
                    ("concat", Const::Str(mut pieces)) => {
                        for a in &args {
                            let v = self.fold(a, Mode::String, opaque, d);
                            pieces = concat(pieces, v.to_pieces());
                        }
                        Const::Str(pieces)
                    }
                    ("join", Const::Arr(items)) if used => {
                        let sep = match args.first() {
                            Some(a) => self.fold(a, Mode::String, opaque, d).to_pieces(),
                            None => vec![Piece::Text {
                                text: ",".into(),
                                src: None,
                            }],
                        };
                        let mut pieces = Vec::new();
                        for (i, item) in items.into_iter().enumerate() {
                            if i > 0 {
                                pieces = concat(pieces, sep.clone());
                            }
                            let v = match item.value {
                                Const::Null | Const::Undefined => Const::text("", None),
                                v => v,
                            };
                            pieces = concat(pieces, v.to_pieces());
                        }
                        Const::Str(pieces)
                    }
                    _ => {
                        opaque.extend(args.iter());
                        Const::Unknown
                    }
                }
            }
            _ => {
                opaque.push(e);
                Const::Unknown
            }
        }
    }
}

/// `"a".concat(…)`, `[…].join(…)`, `String(…)`: calls [`Folder::call`] folds.
fn builds_string(c: &CallExpression<'_>) -> bool {
    match &c.callee {
        Expression::StaticMemberExpression(m) => {
            matches!(m.property.name.as_str(), "concat" | "join")
        }
        Expression::Identifier(f) => f.name == "String",
        _ => false,
    }
}

fn is_string_raw(tag: &Expression<'_>) -> bool {
    matches!(tag, Expression::StaticMemberExpression(m)
        if m.property.name == "raw"
            && matches!(&m.object, Expression::Identifier(id) if id.name == "String"))
}

/// The name an expression is rooted at: `a` of `a.b[c].d`, `(a)`, `a!`.
fn root_name<'t>(e: &Expression<'t>) -> Option<&'t str> {
    match e {
        Expression::Identifier(id) => Some(id.name.as_str()),
        Expression::ParenthesizedExpression(p) => root_name(&p.expression),
        Expression::TSAsExpression(x) => root_name(&x.expression),
        Expression::TSNonNullExpression(x) => root_name(&x.expression),
        Expression::ChainExpression(c) => match &c.expression {
            ChainElement::CallExpression(_) => None,
            ChainElement::TSNonNullExpression(x) => root_name(&x.expression),
            m => m.as_member_expression().and_then(|m| root_name(m.object())),
        },
        _ => e.as_member_expression().and_then(|m| root_name(m.object())),
    }
}

fn target_root<'t>(t: &SimpleAssignmentTarget<'t>) -> Option<&'t str> {
    match t {
        SimpleAssignmentTarget::AssignmentTargetIdentifier(id) => Some(id.name.as_str()),
        _ => t.as_member_expression().and_then(|m| root_name(m.object())),
    }
}

/// The initialiser of the module-level `var`/`let`/`const` named `name`.
fn module_init<'x, 't>(program: &'x Program<'t>, name: &str) -> Option<&'x Expression<'t>> {
    program.body.iter().find_map(|st| {
        let decl = match st {
            Statement::VariableDeclaration(v) => v,
            Statement::ExportDeclaration(e) => match &e.declaration {
                Declaration::VariableDeclaration(v) => v,
                _ => return None,
            },
            _ => return None,
        };
        decl.declarations
            .iter()
            .find_map(|d| match (&d.id, &d.init) {
                (BindingPattern::BindingIdentifier(id), Some(init)) if id.name == name => {
                    Some(init)
                }
                _ => None,
            })
    })
}

/// Second pass: the value of every `const` bound once.
struct Values<'f, 't, 'e> {
    folder: &'f mut Folder<'t, 'e>,
}

impl<'t> Visit<'t> for Values<'_, 't, '_> {
    fn visit_variable_declaration(&mut self, it: &VariableDeclaration<'t>) {
        for d in &it.declarations {
            let (BindingPattern::BindingIdentifier(id), Some(init)) = (&d.id, &d.init) else {
                continue;
            };
            let name = id.name.as_str();
            if !self.folder.bound_once(name) {
                continue;
            }
            if it.kind == VariableDeclarationKind::Const {
                let v = self.folder.fold(init, Mode::String, &mut Vec::new(), 0);
                if matches!(
                    v,
                    Const::Str(_) | Const::Num(_) | Const::Bool(_) | Const::Null | Const::Undefined
                ) {
                    self.folder.consts.insert(name, v);
                }
            }
        }
        walk::walk_variable_declaration(self, it);
    }
}

/// Last pass: everything validation asks about.
struct Collector<'f, 't, 'e> {
    folder: &'f Folder<'t, 'e>,
    options_local: Option<&'t str>,
    options_span: Option<(usize, usize)>,
    /// Where and why the options may differ from their literal.
    options_changed: Option<(usize, String)>,
    commonjs_options: Option<usize>,
    /// How many enclosing functions or blocks bind a name of their own that hides the
    /// module's `options`.
    shadowed: usize,
    out: Analysis,
}

/// Whether a binding named `name` is declared by these parameters or statements for their
/// own scope: parameters, `var` anywhere but in nested functions, and `let`, `const`,
/// `class` and `function` declarations directly among the statements.
fn binds(params: Option<&FormalParameters<'_>>, stmts: &[Statement<'_>], name: &str) -> bool {
    let mut f = BindingFinder {
        name,
        found: false,
        var_only: false,
    };
    if let Some(p) = params {
        f.visit_formal_parameters(p);
    }
    f.var_only = true;
    for st in stmts {
        f.visit_statement(st);
    }
    f.found || lexically_binds(stmts, name)
}

fn lexically_binds(stmts: &[Statement<'_>], name: &str) -> bool {
    stmts.iter().any(|st| match st {
        Statement::VariableDeclaration(v) => {
            v.kind != VariableDeclarationKind::Var
                && v.declarations.iter().any(|d| pattern_binds(&d.id, name))
        }
        Statement::FunctionDeclaration(f) => f.id.as_ref().is_some_and(|id| id.name == name),
        Statement::ClassDeclaration(c) => c.id.as_ref().is_some_and(|id| id.name == name),
        _ => false,
    })
}

fn pattern_binds(p: &BindingPattern<'_>, name: &str) -> bool {
    let mut f = BindingFinder {
        name,
        found: false,
        var_only: false,
    };
    f.visit_binding_pattern(p);
    f.found
}

/// Finds a binding of one name, never inside nested functions.
struct BindingFinder<'n> {
    name: &'n str,
    found: bool,
    /// Only `var` declarations (in statements) count.
    var_only: bool,
}

impl<'t> Visit<'t> for BindingFinder<'_> {
    fn visit_binding_identifier(&mut self, it: &BindingIdentifier<'t>) {
        if !self.var_only && it.name == self.name {
            self.found = true;
        }
    }
    fn visit_variable_declaration(&mut self, it: &VariableDeclaration<'t>) {
        if self.var_only {
            if it.kind == VariableDeclarationKind::Var
                && it
                    .declarations
                    .iter()
                    .any(|d| pattern_binds(&d.id, self.name))
            {
                self.found = true;
            }
            // Initialisers may hold functions, which are not this scope.
            return;
        }
        walk::walk_variable_declaration(self, it);
    }
    fn visit_function(&mut self, _: &Function<'t>, _: oxc_syntax::scope::ScopeFlags) {}
    fn visit_arrow_function_expression(&mut self, _: &ArrowFunctionExpression<'t>) {}
    fn visit_class(&mut self, _: &Class<'t>) {}
    fn visit_expression(&mut self, _: &Expression<'t>) {}
}

impl<'t> Collector<'_, 't, '_> {
    /// Whether `name` is the module's `options` here.
    fn is_options(&self, name: Option<&str>) -> bool {
        self.shadowed == 0 && name.is_some() && name == self.options_local
    }

    /// Walks `walk` with the module's `options` hidden when the scope binds its own.
    fn scoped(&mut self, hides: bool, walk: impl FnOnce(&mut Self)) {
        if hides {
            self.shadowed += 1;
        }
        walk(self);
        if hides {
            self.shadowed -= 1;
        }
    }

    fn string(&mut self, pieces: Vec<Piece>, at: usize, end: usize) {
        // A URL needs the `:` of `://` in text known before the run.
        let holds_scheme = pieces.iter().any(|p| match p {
            Piece::Text { text, .. } => text.contains(':'),
            Piece::Env { value, .. } => value.contains(':'),
            Piece::Unknown => false,
        });
        if holds_scheme {
            self.out.strings.push(FoundString { pieces, at, end });
        }
    }

    /// A string expression: folded whole, its parts not known before the run read on their own.
    fn string_root(&mut self, e: &Expression<'t>) {
        let mut opaque = Vec::new();
        let v = self.folder.fold(e, Mode::String, &mut opaque, 0);
        if let Const::Str(pieces) = v {
            let span = e.span();
            self.string(pieces, span.start as usize, span.end as usize);
        }
        for x in opaque {
            self.visit_expression(x);
        }
    }

    /// A specifier or path argument: folded, never read as a URL.
    fn argument(&mut self, e: &Expression<'t>) -> (Option<String>, usize) {
        let mut opaque = Vec::new();
        let v = self.folder.fold(e, Mode::String, &mut opaque, 0);
        for x in opaque {
            self.visit_expression(x);
        }
        let at = match e {
            Expression::StringLiteral(_) | Expression::TemplateLiteral(_) => {
                e.span().start as usize + 1
            }
            _ => e.span().start as usize,
        };
        (v.as_str(), at)
    }

    fn module(&mut self, specifier: Option<String>, at: usize, kind: ModuleKind) {
        self.out.modules.push(ModuleRef {
            specifier,
            at,
            kind,
        });
    }

    fn options_changed(&mut self, at: usize, why: &str) {
        self.options_changed
            .get_or_insert_with(|| (at, why.to_string()));
    }

    fn in_options(&self, at: usize) -> bool {
        self.options_span.is_some_and(|(s, e)| s <= at && at < e)
    }

    /// The keys of an object literal given as tags.
    fn tags_object(&mut self, o: &ObjectExpression<'t>) {
        for p in &o.properties {
            let ObjectPropertyKind::ObjectProperty(p) = p else {
                continue;
            };
            let at = p.key.span().start as usize;
            let key = if p.computed {
                let mut opaque = Vec::new();
                p.key
                    .as_expression()
                    .and_then(|k| self.folder.fold(k, Mode::String, &mut opaque, 0).as_str())
            } else {
                p.key.static_name().map(|k| k.into_owned())
            };
            match key {
                Some(k) if RESERVED_TAGS.contains(&k.as_str()) => self
                    .out
                    .reserved_tags
                    .push(ReservedTag { key: Some(k), at }),
                Some(_) => {}
                None => self.out.reserved_tags.push(ReservedTag { key: None, at }),
            }
        }
    }

    fn member_name(&self, m: &MemberExpression<'t>) -> Option<String> {
        match m {
            MemberExpression::StaticMemberExpression(s) => Some(s.property.name.to_string()),
            MemberExpression::ComputedMemberExpression(c) => {
                let mut opaque = Vec::new();
                self.folder
                    .fold(&c.expression, Mode::String, &mut opaque, 0)
                    .as_str()
            }
            MemberExpression::PrivateFieldExpression(_) => None,
        }
    }
}

impl<'t> Visit<'t> for Collector<'_, 't, '_> {
    fn visit_expression(&mut self, it: &Expression<'t>) {
        match it {
            // Most literals are names and messages: without a `:` no URL can start in them.
            Expression::StringLiteral(s) if !s.value.contains(':') => {}
            Expression::StringLiteral(_) | Expression::TemplateLiteral(_) => self.string_root(it),
            Expression::BinaryExpression(b) if b.operator == BinaryOperator::Addition => {
                self.string_root(it)
            }
            Expression::CallExpression(c) if builds_string(c) => self.string_root(it),
            Expression::TaggedTemplateExpression(t) if is_string_raw(&t.tag) => {
                self.string_root(it)
            }
            Expression::Identifier(id) if self.is_options(Some(id.name.as_str())) => {
                self.options_changed(
                    id.span.start as usize,
                    "`options` is handed to other code, which may change it",
                );
            }
            _ => walk::walk_expression(self, it),
        }
    }

    fn visit_string_literal(&mut self, it: &StringLiteral<'t>) {
        if !it.value.contains(':') {
            return;
        }
        let src = self.folder.plain(it);
        self.string(
            vec![Piece::Text {
                text: it.value.to_string(),
                src,
            }],
            it.span.start as usize,
            it.span.end as usize,
        );
    }

    fn visit_tagged_template_expression(&mut self, it: &TaggedTemplateExpression<'t>) {
        self.visit_expression(&it.tag);
        // Whatever the tag makes of it, the text it is given is checked as written.
        let mut opaque = Vec::new();
        let pieces = self
            .folder
            .template(&it.quasi, is_string_raw(&it.tag), &mut opaque, 0);
        self.string(
            pieces,
            it.quasi.span.start as usize,
            it.quasi.span.end as usize,
        );
        for x in opaque {
            self.visit_expression(x);
        }
    }

    fn visit_static_member_expression(&mut self, it: &StaticMemberExpression<'t>) {
        match &it.object {
            Expression::Identifier(id) if self.is_options(Some(id.name.as_str())) => {}
            _ => walk::walk_static_member_expression(self, it),
        }
    }

    fn visit_computed_member_expression(&mut self, it: &ComputedMemberExpression<'t>) {
        match &it.object {
            Expression::Identifier(id) if self.is_options(Some(id.name.as_str())) => {
                self.visit_expression(&it.expression)
            }
            _ => walk::walk_computed_member_expression(self, it),
        }
    }

    fn visit_function(&mut self, it: &Function<'t>, flags: oxc_syntax::scope::ScopeFlags) {
        let Some(name) = self.options_local else {
            return walk::walk_function(self, it, flags);
        };
        let own_name = it.r#type == FunctionType::FunctionExpression
            && it.id.as_ref().is_some_and(|id| id.name == name);
        let body: &[Statement<'t>] = it.body.as_ref().map_or(&[], |b| &b.statements[..]);
        let hides = own_name || binds(Some(&it.params), body, name);
        self.scoped(hides, |c| walk::walk_function(c, it, flags));
    }

    fn visit_arrow_function_expression(&mut self, it: &ArrowFunctionExpression<'t>) {
        let Some(name) = self.options_local else {
            return walk::walk_arrow_function_expression(self, it);
        };
        let body: &[Statement<'t>] = match &it.body {
            ArrowFunctionBody::FunctionBody(b) => &b.statements,
            _ => &[],
        };
        let hides = binds(Some(&it.params), body, name);
        self.scoped(hides, |c| walk::walk_arrow_function_expression(c, it));
    }

    fn visit_block_statement(&mut self, it: &BlockStatement<'t>) {
        let hides = self
            .options_local
            .is_some_and(|name| lexically_binds(&it.body, name));
        self.scoped(hides, |c| walk::walk_block_statement(c, it));
    }

    fn visit_catch_clause(&mut self, it: &CatchClause<'t>) {
        let hides = self.options_local.is_some_and(|name| {
            it.param
                .as_ref()
                .is_some_and(|p| pattern_binds(&p.pattern, name))
        });
        self.scoped(hides, |c| walk::walk_catch_clause(c, it));
    }

    fn visit_import_declaration(&mut self, it: &ImportDeclaration<'t>) {
        if it.import_kind.is_type() {
            return;
        }
        self.module(
            Some(it.source.value.to_string()),
            it.source.span.start as usize + 1,
            ModuleKind::Import,
        );
    }

    fn visit_export_from_declaration(&mut self, it: &ExportFromDeclaration<'t>) {
        if it.export_kind.is_type() {
            return;
        }
        self.module(
            Some(it.source.value.to_string()),
            it.source.span.start as usize + 1,
            ModuleKind::Export,
        );
    }

    fn visit_export_all_declaration(&mut self, it: &ExportAllDeclaration<'t>) {
        if it.export_kind.is_type() {
            return;
        }
        self.module(
            Some(it.source.value.to_string()),
            it.source.span.start as usize + 1,
            ModuleKind::Export,
        );
    }

    fn visit_ts_import_equals_declaration(&mut self, it: &TSImportEqualsDeclaration<'t>) {
        if let TSModuleReference::ExternalModuleReference(r) = &it.module_reference {
            if !it.import_kind.is_type() {
                self.module(
                    Some(r.expression.value.to_string()),
                    r.expression.span.start as usize + 1,
                    ModuleKind::Require,
                );
            }
        }
    }

    fn visit_import_expression(&mut self, it: &ImportExpression<'t>) {
        let (spec, at) = self.argument(&it.source);
        self.module(spec, at, ModuleKind::Dynamic);
        if let Some(o) = &it.options {
            self.visit_expression(o);
        }
    }

    fn visit_call_expression(&mut self, it: &CallExpression<'t>) {
        for a in &it.arguments {
            if let Some(name) = a.as_expression().and_then(root_name) {
                if self.is_options(Some(name)) {
                    self.options_changed(
                        a.span().start as usize,
                        "`options` is handed to a function, which may change it",
                    );
                }
            }
        }
        let callee = match &it.callee {
            Expression::Identifier(id) => Some(id.name.as_str()),
            _ => None,
        };
        let first = it.arguments.first().and_then(|a| a.as_expression());
        match (callee, first) {
            // Taken for a module load even when the script binds a `require` of its own.
            (Some("require"), Some(arg)) => {
                let (spec, at) = self.argument(arg);
                self.module(spec, at, ModuleKind::Require);
            }
            (Some("open"), Some(arg)) => {
                let (path, at) = self.argument(arg);
                self.out.opens.push(OpenRef { path, at });
            }
            _ => return walk::walk_call_expression(self, it),
        }
        for a in it.arguments.iter().skip(1) {
            if let Some(x) = a.as_expression() {
                self.visit_expression(x);
            }
        }
    }

    fn visit_object_property(&mut self, it: &ObjectProperty<'t>) {
        let name = if it.computed {
            let mut opaque = Vec::new();
            it.key
                .as_expression()
                .and_then(|k| self.folder.fold(k, Mode::String, &mut opaque, 0).as_str())
        } else {
            it.key.static_name().map(|k| k.into_owned())
        };
        match (name.as_deref(), &it.value) {
            (Some("tags"), Expression::ObjectExpression(o)) => self.tags_object(o),
            (Some("hosts"), Expression::ObjectExpression(_)) => {
                self.out.hosts.push(it.key.span().start as usize)
            }
            (Some("hosts"), _) if self.in_options(it.span.start as usize) => {
                self.out.hosts.push(it.key.span().start as usize)
            }
            _ => {}
        }
        walk::walk_object_property(self, it);
    }

    fn visit_variable_declarator(&mut self, it: &VariableDeclarator<'t>) {
        if let (BindingPattern::BindingIdentifier(id), Some(Expression::ObjectExpression(o))) =
            (&it.id, &it.init)
        {
            if id.name == "tags" {
                self.tags_object(o);
            }
        }
        walk::walk_variable_declarator(self, it);
    }

    fn visit_assignment_expression(&mut self, it: &AssignmentExpression<'t>) {
        if let Some(target) = it.left.as_simple_assignment_target() {
            let root = target_root(target);
            if self.is_options(root) {
                self.options_changed(
                    it.span.start as usize,
                    "`options` is changed after it is declared",
                );
            }
            if let Some(m) = target.as_member_expression() {
                let name = self.member_name(m);
                // `module.exports = …`, `exports.options = …`
                let commonjs = match m.object() {
                    Expression::Identifier(o) => {
                        (o.name == "module" && name.as_deref() == Some("exports"))
                            || (o.name == "exports" && name.as_deref() == Some("options"))
                    }
                    Expression::StaticMemberExpression(o) => {
                        matches!(&o.object, Expression::Identifier(m) if m.name == "module")
                            && o.property.name == "exports"
                            && name.as_deref() == Some("options")
                    }
                    _ => false,
                };
                if commonjs {
                    self.commonjs_options.get_or_insert(it.span.start as usize);
                }
                match (name.as_deref(), &it.right) {
                    (Some("tags"), Expression::ObjectExpression(o)) => self.tags_object(o),
                    (Some("hosts"), Expression::ObjectExpression(_)) => {
                        self.out.hosts.push(it.span.start as usize)
                    }
                    (Some("hosts"), _) if self.is_options(root) => {
                        self.out.hosts.push(it.span.start as usize)
                    }
                    _ => {}
                }
                // `x.tags.testid = …`, `x.tags["testid"] = …`
                if let Some(k) = name.filter(|n| RESERVED_TAGS.contains(&n.as_str())) {
                    if let Some(parent) = m.object().as_member_expression() {
                        if self.member_name(parent).as_deref() == Some("tags") {
                            self.out.reserved_tags.push(ReservedTag {
                                key: Some(k),
                                at: m.span().start as usize,
                            });
                        }
                    }
                }
            }
        }
        walk::walk_assignment_expression(self, it);
    }

    fn visit_update_expression(&mut self, it: &UpdateExpression<'t>) {
        let root = target_root(&it.argument);
        if self.is_options(root) {
            self.options_changed(
                it.span.start as usize,
                "`options` is changed after it is declared",
            );
        }
        walk::walk_update_expression(self, it);
    }

    fn visit_unary_expression(&mut self, it: &UnaryExpression<'t>) {
        if it.operator == UnaryOperator::Delete {
            let root = root_name(&it.argument);
            if self.is_options(root) {
                self.options_changed(
                    it.span.start as usize,
                    "`options` is changed after it is declared",
                );
            }
        }
        walk::walk_unary_expression(self, it);
    }
}
