//! The check language of `checks:`: syntax tree, lexer and parser, and the load-time
//! validation of labels and metrics. Evaluating checks against results is
//! `report::check`; the grammar and semantics are documented there.
//!
//! This lives in the scenario layer because a scenario is validated when it loads: a typo in
//! a check is a load-time error with its column, not a failure after the run.

use crate::metrics::columns::{metric_index, METRICS};
use std::fmt;

// ---------------------------------------------------------------------------------------------
// Syntax tree.

/// A parse or validation error: 1-based column (in characters) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckError {
    /// 1-based column of the offending token.
    pub column: usize,
    /// What was found, and what was expected.
    pub message: String,
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

fn err<T>(column: usize, message: impl Into<String>) -> Result<T, CheckError> {
    Err(CheckError { column, message: message.into() })
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl CmpOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
        }
    }

    pub(crate) fn holds(self, a: f64, b: f64) -> bool {
        match self {
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
        }
    }
}

/// An arithmetic operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
}

/// A numeric expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Num {
    /// A number literal.
    Lit(f64),
    /// `label.metric` (`label` may be `all`).
    Ref {
        /// Policy label or `all`.
        label: String,
        /// Metric name.
        metric: String,
        /// 1-based column of the label.
        column: usize,
    },
    /// Unary minus.
    Neg(Box<Num>),
    /// A binary arithmetic operation.
    Bin(ArithOp, Box<Num>, Box<Num>),
}

/// A parsed check: a boolean expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// `lhs op rhs` on replication means.
    Cmp(CmpOp, Num, Num),
    /// `significant(lhs op rhs)` on the paired per-replication difference `rhs − lhs`.
    Significant(CmpOp, Num, Num),
    /// Both hold.
    And(Box<Check>, Box<Check>),
    /// Either holds.
    Or(Box<Check>, Box<Check>),
    /// Does not hold.
    Not(Box<Check>),
}

impl Num {
    /// Every `label.metric` reference, left to right: (label, metric, column).
    pub(crate) fn refs<'a>(&'a self, out: &mut Vec<(&'a str, &'a str, usize)>) {
        match self {
            Num::Lit(_) => {}
            Num::Ref { label, metric, column } => out.push((label, metric, *column)),
            Num::Neg(a) => a.refs(out),
            Num::Bin(_, a, b) => {
                a.refs(out);
                b.refs(out);
            }
        }
    }
}

impl Check {
    /// Every `label.metric` reference, left to right: (label, metric, column).
    pub fn refs(&self) -> Vec<(&str, &str, usize)> {
        let mut out = Vec::new();
        self.collect_refs(&mut out);
        out
    }

    fn collect_refs<'a>(&'a self, out: &mut Vec<(&'a str, &'a str, usize)>) {
        match self {
            Check::Cmp(_, a, b) | Check::Significant(_, a, b) => {
                a.refs(out);
                b.refs(out);
            }
            Check::And(a, b) | Check::Or(a, b) => {
                a.collect_refs(out);
                b.collect_refs(out);
            }
            Check::Not(a) => a.collect_refs(out),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens.

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Number(f64),
    Ref(String, String),
    Word(String),
    Op(&'static str),
    End,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    column: usize,
}

impl Token {
    fn describe(&self) -> String {
        match &self.tok {
            Tok::Number(_) | Tok::Ref(..) | Tok::Word(_) | Tok::Op(_) => {
                format!("`{}`", self.text())
            }
            Tok::End => "the end of the check".to_string(),
        }
    }

    fn text(&self) -> String {
        match &self.tok {
            Tok::Number(x) => format!("{x}"),
            Tok::Ref(l, m) => format!("{l}.{m}"),
            Tok::Word(w) => w.clone(),
            Tok::Op(o) => (*o).to_string(),
            Tok::End => String::new(),
        }
    }
}

fn is_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

const OPS: &[&str] = &["<=", ">=", "==", "!=", "<", ">", "+", "-", "*", "/", "(", ")"];

fn lex(text: &str) -> Result<Vec<Token>, CheckError> {
    let s: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if is_word_char(c) {
            let (tok, next) = lex_word(&s, i)?;
            out.push(Token { tok, column });
            i = next;
            continue;
        }
        let rest: String = s[i..s.len().min(i + 2)].iter().collect();
        if let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) {
            out.push(Token { tok: Tok::Op(op), column });
            i += op.len();
            continue;
        }
        let hint = match (c, rest.as_str()) {
            (_, "&&") => "; use `and`",
            (_, "||") => "; use `or`",
            ('=', _) => "; use `==` to compare",
            ('!', _) => "; use `not` (or `!=` to compare)",
            ('.', _) => "; a metric is written `label.metric` and a number `0.5`",
            _ => "",
        };
        return err(column, format!("unexpected character `{c}`{hint}"));
    }
    out.push(Token { tok: Tok::End, column: s.len() + 1 });
    Ok(out)
}

/// Lexes a reference, a number or a word starting at `i` (an alphanumeric or `_`).
fn lex_word(s: &[char], i: usize) -> Result<(Tok, usize), CheckError> {
    let mut j = i;
    while j < s.len() && is_label_char(s[j]) {
        j += 1;
    }
    let mut run: String = s[i..j].iter().collect();
    let all_digits = run.chars().all(|c| c.is_ascii_digit());
    if j < s.len() && s[j] == '[' && !all_digits {
        // A result group: `label[tier:vip].metric`.
        let Some(close) = s[j..].iter().position(|&c| c == ']').map(|p| j + p) else {
            return err(j + 1, "unclosed `[`: a group is written `label[tier:vip].metric`");
        };
        let group: String = s[j + 1..close].iter().collect();
        if group.is_empty() || group.chars().any(char::is_whitespace) {
            return err(j + 2, "expected a group such as `class:chat`, `tier:vip` or `pool:h100`");
        }
        run = format!("{run}[{group}]");
        j = close + 1;
        if j >= s.len() || s[j] != '.' {
            return err(j + 1, format!("expected `.metric` after `{run}`"));
        }
    }
    if j < s.len() && s[j] == '.' && !all_digits {
        let start = j + 1;
        let mut k = start;
        while k < s.len() && is_word_char(s[k]) {
            k += 1;
        }
        if k == start || s[start].is_ascii_digit() {
            return err(start + 1, format!("expected a metric name after `{run}.`"));
        }
        return Ok((Tok::Ref(run, s[start..k].iter().collect()), k));
    }
    if s[i].is_ascii_digit() {
        return lex_number(s, i);
    }
    let mut k = i;
    while k < s.len() && is_word_char(s[k]) {
        k += 1;
    }
    Ok((Tok::Word(s[i..k].iter().collect()), k))
}

fn lex_number(s: &[char], i: usize) -> Result<(Tok, usize), CheckError> {
    let digits = |mut k: usize| {
        while k < s.len() && s[k].is_ascii_digit() {
            k += 1;
        }
        k
    };
    let mut k = digits(i);
    if k < s.len() && s[k] == '.' {
        let after = digits(k + 1);
        if after == k + 1 {
            return err(k + 2, "expected digits after the decimal point");
        }
        k = after;
    }
    if k < s.len() && (s[k] == 'e' || s[k] == 'E') {
        let mut e = k + 1;
        if e < s.len() && (s[e] == '+' || s[e] == '-') {
            e += 1;
        }
        let after = digits(e);
        if after == e {
            return err(e + 1, "expected the exponent's digits (as in `1e-3`)");
        }
        k = after;
    }
    if k < s.len() && is_word_char(s[k]) {
        return err(k + 1, format!("unexpected `{}` after a number", s[k]));
    }
    let text: String = s[i..k].iter().collect();
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok((Tok::Number(x), k)),
        _ => err(i + 1, format!("`{text}` is not a finite number")),
    }
}

// ---------------------------------------------------------------------------------------------
// Parser.

/// A parsed subexpression: numeric or boolean, with its first column.
enum Expr {
    Num(Num, usize),
    Bool(Check, usize),
}

impl Expr {
    fn column(&self) -> usize {
        match self {
            Expr::Num(_, c) | Expr::Bool(_, c) => *c,
        }
    }

    fn num(self, context: &str) -> Result<Num, CheckError> {
        match self {
            Expr::Num(n, _) => Ok(n),
            Expr::Bool(_, c) => {
                err(c, format!("expected a number {context}, found a comparison or condition"))
            }
        }
    }

    fn bool(self, context: &str) -> Result<Check, CheckError> {
        match self {
            Expr::Bool(b, _) => Ok(b),
            Expr::Num(_, c) => err(
                c,
                format!(
                    "expected a comparison {context} (such as `a.ttft_ms_p95 < b.ttft_ms_p95`), \
                     found a number"
                ),
            ),
        }
    }
}

/// A sum, and the operator (with its column) and right-hand sum when a comparison follows.
type CmpParts = (Expr, Option<(CmpOp, usize, Expr)>);

struct Parser {
    toks: Vec<Token>,
    pos: usize,
}

const PRIMARY: &str = "a number, `label.metric`, `significant(`, `not` or `(`";

impl Parser {
    fn peek(&self) -> &Token {
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn at_word(&self, w: &str) -> bool {
        matches!(&self.peek().tok, Tok::Word(x) if x == w)
    }

    fn at_op(&self, ops: &[&str]) -> Option<&'static str> {
        match self.peek().tok {
            Tok::Op(o) if ops.contains(&o) => Some(o),
            _ => None,
        }
    }

    fn or(&mut self) -> Result<Expr, CheckError> {
        let mut lhs = self.and()?;
        while self.at_word("or") {
            self.bump();
            let rhs = self.and()?;
            let column = lhs.column();
            let a = lhs.bool("before `or`")?;
            let b = rhs.bool("after `or`")?;
            lhs = Expr::Bool(Check::Or(Box::new(a), Box::new(b)), column);
        }
        Ok(lhs)
    }

    fn and(&mut self) -> Result<Expr, CheckError> {
        let mut lhs = self.not()?;
        while self.at_word("and") {
            self.bump();
            let rhs = self.not()?;
            let column = lhs.column();
            let a = lhs.bool("before `and`")?;
            let b = rhs.bool("after `and`")?;
            lhs = Expr::Bool(Check::And(Box::new(a), Box::new(b)), column);
        }
        Ok(lhs)
    }

    fn not(&mut self) -> Result<Expr, CheckError> {
        if self.at_word("not") {
            let column = self.bump().column;
            let inner = self.not()?.bool("after `not`")?;
            return Ok(Expr::Bool(Check::Not(Box::new(inner)), column));
        }
        self.comparison()
    }

    fn cmp_op(&self) -> Option<CmpOp> {
        Some(match self.at_op(&["<", "<=", ">", ">=", "==", "!="])? {
            "<" => CmpOp::Lt,
            "<=" => CmpOp::Le,
            ">" => CmpOp::Gt,
            ">=" => CmpOp::Ge,
            "==" => CmpOp::Eq,
            _ => CmpOp::Ne,
        })
    }

    /// A comparison, or a lone sum; returns the operator's column too.
    fn comparison_parts(&mut self) -> Result<CmpParts, CheckError> {
        let lhs = self.sum()?;
        let Some(op) = self.cmp_op() else { return Ok((lhs, None)) };
        let op_column = self.bump().column;
        let rhs = self.sum()?;
        if self.cmp_op().is_some() {
            return err(
                self.peek().column,
                "comparisons cannot be chained: write `a < b and b < c`",
            );
        }
        Ok((lhs, Some((op, op_column, rhs))))
    }

    fn comparison(&mut self) -> Result<Expr, CheckError> {
        let (lhs, rest) = self.comparison_parts()?;
        let Some((op, _, rhs)) = rest else { return Ok(lhs) };
        let column = lhs.column();
        let a = lhs.num(&format!("before `{}`", op.symbol()))?;
        let b = rhs.num(&format!("after `{}`", op.symbol()))?;
        Ok(Expr::Bool(Check::Cmp(op, a, b), column))
    }

    fn sum(&mut self) -> Result<Expr, CheckError> {
        self.arith_level(&["+", "-"], Self::product)
    }

    fn product(&mut self) -> Result<Expr, CheckError> {
        self.arith_level(&["*", "/"], Self::unary)
    }

    /// One left-associative level of arithmetic: `next (op next)*` for the operators `ops`.
    fn arith_level(
        &mut self,
        ops: &[&str],
        next: fn(&mut Self) -> Result<Expr, CheckError>,
    ) -> Result<Expr, CheckError> {
        let mut lhs = next(self)?;
        while let Some(o) = self.at_op(ops) {
            self.bump();
            let rhs = next(self)?;
            let column = lhs.column();
            let a = lhs.num(&format!("before `{o}`"))?;
            let b = rhs.num(&format!("after `{o}`"))?;
            let op = match o {
                "+" => ArithOp::Add,
                "-" => ArithOp::Sub,
                "*" => ArithOp::Mul,
                _ => ArithOp::Div,
            };
            lhs = Expr::Num(Num::Bin(op, Box::new(a), Box::new(b)), column);
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<Expr, CheckError> {
        if self.at_op(&["-"]).is_some() {
            let column = self.bump().column;
            let inner = self.unary()?.num("after unary `-`")?;
            return Ok(Expr::Num(Num::Neg(Box::new(inner)), column));
        }
        self.primary()
    }

    fn expect_close(&mut self, open_column: usize) -> Result<(), CheckError> {
        if self.at_op(&[")"]).is_some() {
            self.bump();
            return Ok(());
        }
        let t = self.peek();
        err(
            t.column,
            format!(
                "expected `)` to close the `(` at column {open_column}, found {}",
                t.describe()
            ),
        )
    }

    fn primary(&mut self) -> Result<Expr, CheckError> {
        let t = self.bump();
        match t.tok {
            Tok::Number(x) => Ok(Expr::Num(Num::Lit(x), t.column)),
            Tok::Ref(label, metric) => {
                Ok(Expr::Num(Num::Ref { label, metric, column: t.column }, t.column))
            }
            Tok::Op("(") => {
                let inner = self.or()?;
                self.expect_close(t.column)?;
                Ok(match inner {
                    Expr::Num(n, _) => Expr::Num(n, t.column),
                    Expr::Bool(b, _) => Expr::Bool(b, t.column),
                })
            }
            Tok::Word(ref w) if w == "significant" => self.significant(t.column),
            Tok::Word(ref w) if ["and", "or", "not"].contains(&w.as_str()) => {
                err(t.column, format!("expected {PRIMARY}, found `{w}`"))
            }
            Tok::Word(w) => err(
                t.column,
                format!(
                    "unknown word `{w}`: expected {PRIMARY} \
                     (metrics are written `label.metric`)"
                ),
            ),
            _ => err(t.column, format!("expected {PRIMARY}, found {}", t.describe())),
        }
    }

    fn significant(&mut self, column: usize) -> Result<Expr, CheckError> {
        if self.at_op(&["("]).is_none() {
            let t = self.peek();
            return err(
                t.column,
                format!("expected `(` after `significant`, found {}", t.describe()),
            );
        }
        let open = self.bump().column;
        let (lhs, rest) = self.comparison_parts()?;
        let Some((op, op_column, rhs)) = rest else {
            let t = self.peek();
            return err(
                t.column,
                format!(
                    "expected `<`, `>` or `!=` inside significant(...), found {}",
                    t.describe()
                ),
            );
        };
        if !matches!(op, CmpOp::Lt | CmpOp::Gt | CmpOp::Ne) {
            return err(
                op_column,
                format!(
                    "significant() takes `<`, `>` or `!=` (a significant difference is strict), \
                     found `{}`",
                    op.symbol()
                ),
            );
        }
        let a = lhs.num(&format!("before `{}`", op.symbol()))?;
        let b = rhs.num(&format!("after `{}`", op.symbol()))?;
        let mut refs = Vec::new();
        a.refs(&mut refs);
        b.refs(&mut refs);
        if refs.is_empty() {
            return err(open + 1, "significant() needs at least one `label.metric` to compare");
        }
        self.expect_close(open)?;
        Ok(Expr::Bool(Check::Significant(op, a, b), column))
    }
}

/// Parses a check expression (syntax only; see [`validate`] for labels and metrics).
pub fn parse(text: &str) -> Result<Check, CheckError> {
    let mut p = Parser { toks: lex(text)?, pos: 0 };
    let e = p.or()?;
    let t = p.peek();
    if t.tok != Tok::End {
        let what = if matches!(t.tok, Tok::Op(")")) {
            "an unmatched `)`".to_string()
        } else {
            t.describe()
        };
        return err(
            t.column,
            format!("expected `and`, `or` or the end of the check, found {what}"),
        );
    }
    match e {
        Expr::Bool(b, _) => Ok(b),
        Expr::Num(_, _) => err(
            1,
            "a check must be a comparison such as `a.ttft_ms_p95 < b.ttft_ms_p95`, found a number",
        ),
    }
}

/// Parses `text` and checks that every label is one of the policy `labels` — or every one of
/// the autoscaler labels `scalers` (a check compares policies or autoscalers, not both) — or
/// `all`, every group one of `groups`, and every metric a column of `runs.csv`. Used when a
/// scenario loads.
pub fn validate(
    text: &str,
    labels: &[&str],
    scalers: &[&str],
    groups: &[String],
) -> Result<Check, CheckError> {
    let check = parse(text)?;
    let refs = check.refs();
    let named: Vec<(&str, usize)> =
        refs.iter().map(|r| (split_group(r.0).0, r.2)).filter(|(l, _)| *l != "all").collect();
    let of_autoscalers = |l: &str| scalers.contains(&l) && !labels.contains(&l);
    let any_autoscaler = named.iter().find(|(l, _)| of_autoscalers(l));
    match any_autoscaler {
        Some(_) if named.iter().all(|(l, _)| of_autoscalers(l)) => {
            check_refs(&check, Some(scalers))?;
        }
        Some((a, _)) => {
            if let Some((p, column)) = named.iter().find(|(l, _)| labels.contains(l)) {
                return err(
                    *column,
                    format!(
                        "{p:?} is a policy and {a:?} an autoscaler: a check compares policies \
                         (for each autoscaler) or autoscalers (for each policy), not both"
                    ),
                );
            }
            let (bad, column) =
                named.iter().find(|(l, _)| !scalers.contains(l)).copied().unwrap_or(("", 1));
            return err(
                column,
                format!("unknown autoscaler label {bad:?}; autoscalers: {}", scalers.join(", ")),
            );
        }
        None => check_refs(&check, Some(labels))?,
    }
    for (label, _, column) in check.refs() {
        let (_, group) = split_group(label);
        if group != "all" && !groups.iter().any(|g| g == group) {
            let known = if groups.is_empty() {
                "this scenario has no result groups (it needs two classes, tenants, tiers or pools)"
                    .to_string()
            } else {
                format!("groups: {}", groups.join(", "))
            };
            return err(column, format!("unknown group {group:?}; {known}"));
        }
    }
    Ok(check)
}

/// A reference label split into the policy label and the result group (`all` when none):
/// `p[tier:vip]` → (`p`, `tier:vip`).
pub fn split_group(label: &str) -> (&str, &str) {
    match label.split_once('[') {
        Some((l, g)) => (l, g.trim_end_matches(']')),
        None => (label, "all"),
    }
}

/// Checks the metric of every reference, and with `labels` its label too (labels are checked
/// at load time only: at evaluation a policy filtered out of the run is skipped instead).
pub(crate) fn check_refs(check: &Check, labels: Option<&[&str]>) -> Result<(), CheckError> {
    for (full, metric, column) in check.refs() {
        let (label, _) = split_group(full);
        if let Some(labels) = labels {
            if label == "all" && labels.contains(&"all") {
                return err(
                    column,
                    "a policy is labelled \"all\", which checks reserve for every policy: \
                     give it another `label:`",
                );
            }
            if label != "all" && !labels.contains(&label) {
                return err(
                    column,
                    format!("unknown policy label {label:?}; labels: {}", labels.join(", ")),
                );
            }
        }
        if metric_index(metric).is_none() {
            let metric_column = column + full.chars().count() + 1;
            let names: Vec<&str> = METRICS.iter().map(|d| d.name).collect();
            let hint = match closest(metric, &names) {
                Some(s) => format!(" (did you mean {s}?)"),
                None => String::new(),
            };
            return err(
                metric_column,
                format!("unknown metric {metric:?}{hint}; metrics: {}", names.join(", ")),
            );
        }
    }
    Ok(())
}

/// The candidate within edit distance 3 of `word`, if one is closest.
fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let dist = |a: &str, b: &str| {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let sub = prev[j] + usize::from(ca != *cb);
                cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
            }
            prev = cur;
        }
        prev[b.len()]
    };
    candidates
        .iter()
        .map(|c| (dist(word, c), *c))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(text: &str) -> usize {
        parse(text).expect_err(text).column
    }

    #[test]
    fn parses_precedence_and_types() {
        let c =
            parse("not a.x < 2 * b.x + 1 and c.y >= 0 or significant(a.x != b.x)").expect("parses");
        let Check::Or(l, r) = c else { panic!("or at the top: {c:?}") };
        assert!(matches!(*r, Check::Significant(CmpOp::Ne, _, _)));
        let Check::And(n, _) = *l else { panic!("and under or") };
        let Check::Not(inner) = *n else { panic!("not binds looser than <") };
        let Check::Cmp(CmpOp::Lt, _, Num::Bin(ArithOp::Add, m, _)) = *inner else {
            panic!("+ binds looser than *")
        };
        assert!(matches!(*m, Num::Bin(ArithOp::Mul, _, _)));
        assert!(parse("(a.x + 1) * 2 <= -(b.x) / 1e-3").is_ok());
        assert!(parse("((a.x < b.x))").is_ok());
        assert!(parse("p-2.x < rr_1.x").is_ok());
        let Check::Cmp(_, Num::Bin(ArithOp::Sub, _, _), _) = parse("a.x-b.x < 1").expect("minus")
        else {
            panic!("a.x-b.x is a difference")
        };
        let Check::Cmp(_, Num::Ref { label, .. }, _) = parse("2-b.x < 1").expect("label") else {
            panic!("2-b.x is a reference")
        };
        assert_eq!(label, "2-b");
    }

    #[test]
    fn errors_carry_columns() {
        assert_eq!(col("a.x <"), 6);
        assert_eq!(col("a.x < b.x < c.x"), 11);
        assert_eq!(col("a.x = b.x"), 5);
        assert_eq!(col("(a.x < b.x"), 11);
        assert_eq!(col("a.x + 1"), 1);
        assert_eq!(col("a.x < b.x and 3"), 15);
        assert_eq!(col("a. < b.x"), 3);
        assert_eq!(col("significant(a.x <= b.x)"), 17);
        assert_eq!(col("significant(1 < 2)"), 13);
        assert_eq!(col("a.x < 2x"), 8);
        assert_eq!(col("a.x < b.x)"), 10);
        assert_eq!(col("a.x < foo"), 7);
        assert_eq!(col(""), 1);
        assert_eq!(col("a.x < b.x && c.x"), 11);
    }

    #[test]
    fn groups_qualify_references() {
        let c = parse("p[tier:vip].ttft_ms_p95 < q[tier:vip].ttft_ms_p95").expect("parses");
        let refs = c.refs();
        assert_eq!(refs[0].0, "p[tier:vip]");
        assert_eq!(split_group(refs[0].0), ("p", "tier:vip"));
        assert_eq!(split_group("p"), ("p", "all"));
        let groups = vec!["tier:vip".to_string(), "tier:free".to_string()];
        assert!(validate("p[tier:vip].ttft_ms_p95 < 1", &["p"], &[], &groups).is_ok());
        let e =
            validate("p[tier:gold].ttft_ms_p95 < 1", &["p"], &[], &groups).expect_err("no group");
        assert_eq!(e.column, 1);
        assert!(e.message.contains("unknown group \"tier:gold\""), "{}", e.message);
        assert!(validate("q[tier:vip].ttft_ms_p95 < 1", &["p"], &[], &groups).is_err(), "label");
        assert_eq!(parse("p[tier:vip.x < 1").expect_err("unclosed").column, 2);
        assert_eq!(parse("p[tier:vip] < 1").expect_err("no metric").column, 12);
        assert_eq!(parse("p[].x < 1").expect_err("empty").column, 3);
    }

    #[test]
    fn validation_names_labels_and_metrics() {
        let e =
            validate("random.ttft_ms_p95 < p2c.ttft_ms_p95", &["random", "round_robin"], &[], &[])
                .expect_err("unknown label");
        assert_eq!(
            e.to_string(),
            "column 22: unknown policy label \"p2c\"; labels: random, round_robin"
        );
        let e = validate("all.ttft_p95 < 1", &["random"], &[], &[]).expect_err("unknown metric");
        assert_eq!(e.column, 5);
        assert!(e.message.contains("did you mean ttft_ms_p95?"), "{}", e.message);
        assert!(validate("all.timeout_rate < 0.01", &["random"], &[], &[]).is_ok());
        assert!(validate("all.timeout_rate < 0.01", &["all"], &[], &[]).is_err());
    }

    #[test]
    fn a_check_compares_policies_or_autoscalers() {
        let (pols, scalers) = (&["lr", "rr"][..], &["hpa", "kpa", "lr"][..]);
        assert!(validate("hpa.ttft_ms_p95 < kpa.ttft_ms_p95", pols, scalers, &[]).is_ok());
        assert!(validate("hpa.ttft_ms_p95 < all.ttft_ms_p95", pols, scalers, &[]).is_ok());
        // `lr` is both: it is the policy, so this is a policy check.
        assert!(validate("lr.ttft_ms_p95 < rr.ttft_ms_p95", pols, scalers, &[]).is_ok());
        let e =
            validate("hpa.ttft_ms_p95 < rr.ttft_ms_p95", pols, scalers, &[]).expect_err("mixed");
        assert!(e.message.contains("not both"), "{}", e.message);
        let e =
            validate("hpa.ttft_ms_p95 < kpb.ttft_ms_p95", pols, scalers, &[]).expect_err("typo");
        assert_eq!(e.column, 19);
        assert!(e.message.contains("unknown autoscaler label \"kpb\""), "{}", e.message);
    }
}
