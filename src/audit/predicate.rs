//! Heuristic analysis of policy predicates, on the text PostgreSQL deparses them to
//! (`pg_get_expr`), and of function bodies (`prosrc`).
//!
//! The expression is split at the top level into OR and AND terms (parentheses and string
//! literals respected). A term is *the tenant predicate* when it compares (with `=`) the
//! tenant column to the tenant setting, read either by `current_setting('<setting>', …)`
//! or by a function whose body reads it. An AND is tenant-scoped if any term is; an OR
//! only if every term is. What this cannot see: the semantics of arbitrary functions,
//! operators or subqueries beyond the textual shape; `tenantguard probe` settles those
//! cases by attacking.

use regex::Regex;

/// A lexical token of a deparsed expression.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// An identifier or keyword (lower-cased unless quoted), dotted parts joined.
    Ident(String),
    /// A string literal's contents.
    Str(String),
    /// A number.
    Num,
    /// An operator or other punctuation.
    Op(String),
    Open,
    Close,
    Comma,
}

fn tokenize(s: &str) -> Vec<Tok> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let ident_char = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let mut v = String::new();
            i += 1;
            while i < chars.len() {
                if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        v.push('\'');
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                v.push(chars[i]);
                i += 1;
            }
            out.push(Tok::Str(v));
        } else if c == '"' || ident_char(c) && !c.is_ascii_digit() {
            // Dotted names (`schema.fn`, `t.col`, `"Quoted".col`) become one token.
            let mut name = String::new();
            loop {
                if i < chars.len() && chars[i] == '"' {
                    i += 1;
                    while i < chars.len() {
                        if chars[i] == '"' {
                            if chars.get(i + 1) == Some(&'"') {
                                name.push('"');
                                i += 2;
                                continue;
                            }
                            i += 1;
                            break;
                        }
                        name.push(chars[i]);
                        i += 1;
                    }
                } else {
                    while i < chars.len() && ident_char(chars[i]) {
                        name.push(chars[i].to_ascii_lowercase());
                        i += 1;
                    }
                }
                let next_is_part = i + 1 < chars.len()
                    && chars[i] == '.'
                    && (chars[i + 1] == '"' || ident_char(chars[i + 1]));
                if next_is_part {
                    name.push('.');
                    i += 1;
                } else {
                    break;
                }
            }
            out.push(Tok::Ident(name));
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            out.push(Tok::Num);
        } else if c == '(' {
            out.push(Tok::Open);
            i += 1;
        } else if c == ')' {
            out.push(Tok::Close);
            i += 1;
        } else if c == ',' {
            out.push(Tok::Comma);
            i += 1;
        } else {
            let mut op = String::new();
            while i < chars.len() && "+-*/<>=~!@#%^&|`?:[]".contains(chars[i]) {
                op.push(chars[i]);
                i += 1;
            }
            if op.is_empty() {
                op.push(c);
                i += 1;
            }
            out.push(Tok::Op(op));
        }
    }
    out
}

#[derive(Debug)]
enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Atom(Vec<Tok>),
}

fn strip_parens(mut t: &[Tok]) -> &[Tok] {
    while t.len() >= 2 && t[0] == Tok::Open && t[t.len() - 1] == Tok::Close {
        let mut depth = 0i32;
        let mut encloses = true;
        for (i, tok) in t.iter().enumerate() {
            match tok {
                Tok::Open => depth += 1,
                Tok::Close => depth -= 1,
                _ => {}
            }
            if depth == 0 && i < t.len() - 1 {
                encloses = false;
                break;
            }
        }
        if !encloses {
            break;
        }
        t = &t[1..t.len() - 1];
    }
    t
}

fn split_top<'a>(t: &'a [Tok], word: &str) -> Vec<&'a [Tok]> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    let mut between_open = false;
    for (i, tok) in t.iter().enumerate() {
        match tok {
            Tok::Open => depth += 1,
            Tok::Close => depth -= 1,
            Tok::Ident(w) if depth == 0 && w == "between" => between_open = true,
            Tok::Ident(w) if depth == 0 && w == word => {
                // `x BETWEEN a AND b` is one term.
                if word == "and" && between_open {
                    between_open = false;
                    continue;
                }
                parts.push(&t[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&t[start..]);
    parts
}

fn parse(t: &[Tok]) -> Expr {
    let t = strip_parens(t);
    let ors = split_top(t, "or");
    if ors.len() > 1 {
        return Expr::Or(ors.into_iter().map(parse).collect());
    }
    let ands = split_top(t, "and");
    if ands.len() > 1 {
        return Expr::And(ands.into_iter().map(parse).collect());
    }
    Expr::Atom(t.to_vec())
}

/// What the analysis needs to know besides the expression.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// The tenant column of the table (`None` when it has none: only qualified
    /// references such as `p.tenant_id` in a subquery count).
    pub column: Option<&'a str>,
    /// The column name tenant tables use (`tenant_id`).
    pub tenant_column: &'a str,
    /// Lower-case names of the settings that carry the context (`app.tenant_id`, or
    /// `request.jwt.claims` under a JWT model).
    pub settings: &'a [String],
    /// Lower-case names (`schema.fn` and `fn`) of functions whose body reads the setting.
    pub source_functions: &'a [String],
    /// Lower-case names (`schema.t` and `t`) of tenant tables whose own row-level security
    /// scopes them: a subquery over one of them is filtered by its policies.
    pub scoped_relations: &'a [String],
    /// `current_user`/`session_user` *is* the context (role per tenant), so comparing with
    /// it is the tenant predicate, not a pooled-identity mistake.
    pub identity_is_context: bool,
}

/// What was found in one predicate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Analysis {
    /// Restricts rows to the current tenant.
    pub scoped: bool,
    /// Literally `true` (or an AND of `true`s).
    pub always_true: bool,
    /// An OR of the tenant predicate with something else.
    pub widened_by_or: bool,
    /// The extra OR term is `tenant_column IS NULL` (shared rows).
    pub null_share: bool,
    /// Opens up when the setting is missing: `current_setting(..) IS NULL`, `= ''`, or a
    /// `coalesce` around the tenant comparison.
    pub fail_open: bool,
    /// Compares with `current_user`/`session_user` (no isolation under one pool role).
    pub identity_key: bool,
    /// Reads the tenant setting at all (directly or through a function).
    pub reads_setting: bool,
}

impl Context<'_> {
    fn is_col(&self, name: &str) -> bool {
        let qualified = name.ends_with(&format!(".{}", self.tenant_column));
        match self.column {
            Some(c) => name == c || qualified || name.ends_with(&format!(".{c}")),
            None => qualified,
        }
    }

    fn is_source_fn(&self, name: &str) -> bool {
        self.source_functions.iter().any(|f| f == name)
    }

    fn mentions_setting(&self, t: &[Tok]) -> bool {
        t.windows(3).any(|w| {
            matches!(&w[0], Tok::Ident(f) if f == "current_setting" || f == "pg_catalog.current_setting")
                && w[1] == Tok::Open
                && matches!(&w[2], Tok::Str(s) if self.settings.iter().any(|x| s.eq_ignore_ascii_case(x)))
        }) || t.windows(2).any(
            |w| matches!(&w[0], Tok::Ident(f) if self.is_source_fn(f)) && w[1] == Tok::Open,
        ) || (self.identity_is_context
            && (has_ident(t, "current_user") || has_ident(t, "session_user") || has_ident(t, "current_role")))
    }

    fn mentions_col(&self, t: &[Tok]) -> bool {
        t.iter()
            .any(|x| matches!(x, Tok::Ident(n) if self.is_col(n)))
    }
}

fn has_ident(t: &[Tok], w: &str) -> bool {
    t.iter().any(|x| matches!(x, Tok::Ident(n) if n == w))
}

fn has_is_null(t: &[Tok]) -> bool {
    t.windows(2).any(
        |w| matches!((&w[0], &w[1]), (Tok::Ident(a), Tok::Ident(b)) if a == "is" && b == "null"),
    )
}

fn analyse_expr(e: &Expr, cx: &Context<'_>, out: &mut Analysis) -> bool {
    match e {
        Expr::Atom(t) => {
            if t.len() == 1 && t[0] == Tok::Ident("true".into()) {
                return false;
            }
            // A negated term (`NOT (tenant = …)`) is never the tenant predicate.
            if matches!(t.first(), Some(Tok::Ident(w)) if w == "not") {
                return false;
            }
            let setting = cx.mentions_setting(t);
            let col = cx.mentions_col(t);
            if !cx.identity_is_context
                && (has_ident(t, "current_user")
                    || has_ident(t, "session_user")
                    || has_ident(t, "current_role"))
            {
                out.identity_key = true;
            }
            if setting && col && has_ident(t, "coalesce") {
                out.fail_open = true;
                return false;
            }
            let eq = t.iter().any(|x| matches!(x, Tok::Op(o) if o == "="));
            // `EXISTS (SELECT … FROM scoped_table …)` / `x IN (SELECT … FROM scoped_table)`.
            let scoped_subquery = t.windows(2).any(|w| {
                matches!((&w[0], &w[1]), (Tok::Ident(f), Tok::Ident(r))
                    if f == "from" && cx.scoped_relations.iter().any(|s| s == r))
            });
            // `is_member_of(org_id)`: one call of a function that reads the context, with
            // the tenant column as an argument (the usual Supabase membership helper).
            let context_call = matches!(t.first(), Some(Tok::Ident(f)) if cx.is_source_fn(f))
                && t.get(1) == Some(&Tok::Open)
                && t.last() == Some(&Tok::Close)
                && strip_parens(&t[1..]).len() + 2 == t.len() - 1;
            (setting && col && (eq || context_call) && !has_is_null(t))
                || (scoped_subquery && !has_is_null(t))
        }
        Expr::And(parts) => {
            let mut any = false;
            for p in parts {
                any |= analyse_expr(p, cx, out);
            }
            any
        }
        Expr::Or(parts) => {
            let mut all = true;
            let mut some = false;
            for p in parts {
                let s = analyse_expr(p, cx, out);
                all &= s;
                some |= s;
                if !s {
                    if let Expr::Atom(t) = p {
                        if has_is_null(t) && cx.mentions_setting(t) {
                            out.fail_open = true;
                        } else if has_is_null(t) && cx.mentions_col(t) {
                            out.null_share = true;
                        } else if cx.mentions_setting(t)
                            && t.iter().any(|x| matches!(x, Tok::Str(s) if s.is_empty()))
                        {
                            out.fail_open = true;
                        }
                    }
                }
            }
            if some && !all {
                out.widened_by_or = true;
            }
            all
        }
    }
}

fn always_true(e: &Expr) -> bool {
    match e {
        Expr::Atom(t) => t.len() == 1 && t[0] == Tok::Ident("true".into()),
        Expr::And(p) => p.iter().all(always_true),
        Expr::Or(p) => p.iter().any(always_true),
    }
}

/// Analyses one deparsed predicate.
pub fn analyse(expr: &str, cx: &Context<'_>) -> Analysis {
    let toks = tokenize(expr);
    let tree = parse(&toks);
    let mut out = Analysis {
        reads_setting: cx.mentions_setting(&toks),
        ..Analysis::default()
    };
    out.scoped = analyse_expr(&tree, cx, &mut out);
    out.always_true = always_true(&tree);
    if out.always_true {
        out.scoped = false;
    }
    out
}

/// Calls of `functions` (lower-case `schema.fn` or `fn`) in `expr` that are not wrapped as
/// `(SELECT fn(…))`, so they run once per row instead of once per query.
pub fn per_row_calls(expr: &str, functions: &[String]) -> Vec<String> {
    let toks = tokenize(expr);
    let mut out = Vec::new();
    for (i, w) in toks.windows(2).enumerate() {
        if let (Tok::Ident(f), Tok::Open) = (&w[0], &w[1]) {
            if functions.iter().any(|x| x == f) {
                let wrapped = i >= 1 && matches!(&toks[i - 1], Tok::Ident(s) if s == "select");
                if !wrapped && !out.contains(f) {
                    out.push(f.clone());
                }
            }
        }
    }
    out
}

/// How a piece of SQL text (a deparsed predicate or a function body) reads the setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SettingUse {
    /// Calls `current_setting('<setting>'…)`.
    pub reads: bool,
    /// Some call has no `missing_ok` argument: errors when the setting was never set.
    pub one_argument: bool,
    /// Casts the value without `NULLIF(…, '')`: errors on `''` after a rolled-back SET LOCAL.
    pub missing_nullif: bool,
    /// Sets it with session scope (`set_config(…, false)` or plain `SET`).
    pub session_scoped_set: bool,
}

/// Compiled patterns for one setting name (compile once: an audit matches thousands of
/// predicates).
#[derive(Debug, Clone)]
pub struct SettingPatterns {
    call: Regex,
    cast: Regex,
    nullif: Regex,
    session_set: [Regex; 2],
}

impl SettingPatterns {
    /// Patterns for `setting` (case-insensitive, whitespace-tolerant).
    pub fn new(setting: &str) -> SettingPatterns {
        let name = regex::escape(&setting.to_lowercase());
        let call = format!(r"current_setting\s*\(\s*'{name}'(?:\s*::\s*\w+)?\s*(,[^)]*)?\)");
        // The patterns are built from an escaped name, so they always compile.
        let re =
            |p: &str| Regex::new(p).unwrap_or_else(|_| Regex::new("$^").expect("trivial regex"));
        SettingPatterns {
            cast: re(&format!(r"{call}\s*\)?\s*::\s*\w+")),
            nullif: re(&format!(r"nullif\s*\(\s*\(?\s*{call}")),
            call: re(&call),
            session_set: [
                re(&format!(
                    r"set_config\s*\(\s*'{name}'[^;]*,\s*(false|'f'|'false')\s*\)"
                )),
                re(&format!(r"(^|[;\s])set\s+(session\s+)?{name}\s*(=|to)")),
            ],
        }
    }

    /// How `text` (a deparsed predicate or a function body) uses the setting.
    pub fn find(&self, text: &str) -> SettingUse {
        let lower = text.to_lowercase();
        let mut out = SettingUse::default();
        for m in self.call.captures_iter(&lower) {
            out.reads = true;
            if m.get(1).is_none() {
                out.one_argument = true;
            }
        }
        // A cast right after the call (optionally behind one closing paren) without NULLIF.
        out.missing_nullif =
            out.reads && self.cast.is_match(&lower) && !self.nullif.is_match(&lower);
        out.session_scoped_set = self.session_set.iter().any(|r| r.is_match(&lower));
        out
    }
}

/// Finds how `text` uses `setting` (compiles the patterns; prefer [`SettingPatterns`]).
pub fn setting_use(text: &str, setting: &str) -> SettingUse {
    SettingPatterns::new(setting).find(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> (Vec<String>, Vec<String>) {
        (
            vec![
                "tenantguard.current_tenant_id".to_string(),
                "current_tenant_id".to_string(),
            ],
            vec!["app.tenant_id".to_string()],
        )
    }

    #[test]
    fn reference_predicate_is_scoped() {
        let (f, settings) = cx();
        let c = Context {
            column: Some("tenant_id"),
            tenant_column: "tenant_id",
            settings: &settings,
            source_functions: &f,
            scoped_relations: &[],
            identity_is_context: false,
        };
        let a = analyse(
            "(tenant_id = ( SELECT tenantguard.current_tenant_id() AS current_tenant_id))",
            &c,
        );
        assert!(a.scoped && !a.widened_by_or);
        let a = analyse(
            "((tenant_id = (current_setting('app.tenant_id'::text, true))::uuid) OR true)",
            &c,
        );
        assert!(!a.scoped && a.widened_by_or);
        let a = analyse(
            "((tenant_id IS NULL) OR (tenant_id = (current_setting('app.tenant_id'::text))::uuid))",
            &c,
        );
        assert!(!a.scoped && a.null_share);
        let a = analyse("true", &c);
        assert!(a.always_true && !a.scoped);
        let a = analyse("(tenant_id = COALESCE((current_setting('app.tenant_id'::text, true))::uuid, tenant_id))", &c);
        assert!(!a.scoped && a.fail_open);
    }

    #[test]
    fn setting_uses() {
        let u = setting_use(
            "(current_setting('app.tenant_id'::text))::uuid",
            "app.tenant_id",
        );
        assert!(u.reads && u.one_argument && u.missing_nullif);
        let u = setting_use(
            "SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid",
            "app.tenant_id",
        );
        assert!(u.reads && !u.one_argument && !u.missing_nullif);
        let u = setting_use(
            "perform set_config('app.tenant_id', t::text, false);",
            "app.tenant_id",
        );
        assert!(u.session_scoped_set);
    }
}
