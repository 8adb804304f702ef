//! `checks:` — assertions about policy quality, evaluated per scenario cell after a run.
//!
//! A check is a boolean expression over the metrics of the policies of one cell, e.g.
//! `least_requests.ttft_ms_p95 < round_robin.ttft_ms_p95`. `routelab run` prints one line per
//! check per cell (`PASS`, `FAIL` or `SKIP`, the check as written and the values it compared)
//! and exits 1 when any check fails. Checks are parsed and their labels and metrics validated
//! when the scenario loads ([`validate`]), so a typo is a load-time error with its column, never
//! a check that silently fails after an hour of simulation.
//!
//! # Grammar
//!
//! ```text
//! check      := or
//! or         := and ("or" and)*
//! and        := not ("and" not)*
//! not        := "not" not | comparison
//! comparison := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?
//! sum        := product (("+" | "-") product)*
//! product    := unary (("*" | "/") unary)*
//! unary      := "-" unary | primary
//! primary    := NUMBER | LABEL "." METRIC | "(" or ")"
//!             | "significant" "(" sum ("<" | ">" | "!=") sum ")"
//! ```
//!
//! `LABEL` is a policy label (`[A-Za-z0-9_-]+`) or `all`; `METRIC` a column of `runs.csv`
//! (`ttft_ms_p95`, `timeout_rate`, ...); `NUMBER` a decimal such as `0.01`, `2` or `1e-3`.
//! Labels may contain `-`, so `2-b.x` reads the label `2-b`: put spaces around a binary minus
//! (`2 - b.x`; `a.x-b.x` is fine, since metric names have no `-`). Comparisons do not chain
//! (`a < b < c` is an error: write `a < b and b < c`); the whole check must be boolean and the
//! operands of arithmetic and comparisons numeric, which the parser enforces with the column
//! of the offending operand.
//!
//! # Semantics
//!
//! - A plain reference `label.metric` is the **mean over replications** of that policy's
//!   metric in the cell (the value in `summary.csv`).
//! - `all.metric` makes the comparison it appears in a quantifier: it must hold with `all`
//!   replaced by each policy of the cell, **except** the policies the same comparison names
//!   explicitly (so `least_requests.ttft_ms_p95 <= all.ttft_ms_p95` compares it with every
//!   *other* policy, and a strict `<` does not fail against itself). If that leaves no policy,
//!   the check fails.
//! - `significant(L op R)` holds when the 95% confidence interval of the **paired**
//!   per-replication difference `R_r − L_r` lies entirely on the side `op` claims: above 0 for
//!   `<`, below 0 for `>`, and excluding 0 for `!=`. Sides may be arithmetic over references
//!   (evaluated per replication) and numbers. Pairing is by replication index over the
//!   replications every referenced policy has; it needs at least 2 pairs, otherwise the check
//!   fails with that reason. See [`super::compare`] for why the paired interval is the right
//!   one under common random numbers.
//! - A metric that is undefined (no samples, empty in the CSV), a division by zero or a
//!   result that is not a number makes the comparison *undefined*: `and`/`or`/`not` follow
//!   three-valued (Kleene) logic, and a check whose result is undefined fails with the reason.
//! - A check naming a policy that was not run in the cell (e.g. filtered out with `--policy`)
//!   is reported as `SKIP` and is not a failure.
//!
//! Evaluation is a pure function of the rows, so the printed lines are deterministic.

use super::stats;
use super::{metric_index, CommandOutput, RunRow, SummaryRow, METRICS};
use crate::scenario::Scenario;
use std::collections::{BTreeMap, BTreeSet};
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
    fn symbol(self) -> &'static str {
        match self {
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
        }
    }

    fn holds(self, a: f64, b: f64) -> bool {
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
    fn refs<'a>(&'a self, out: &mut Vec<(&'a str, &'a str, usize)>) {
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
    let run: String = s[i..j].iter().collect();
    let all_digits = run.chars().all(|c| c.is_ascii_digit());
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

/// Parses `text` and checks that every label is one of `labels` (or `all`) and every metric is
/// a column of `runs.csv`. Used when a scenario loads.
pub fn validate(text: &str, labels: &[&str]) -> Result<Check, CheckError> {
    let check = parse(text)?;
    check_refs(&check, Some(labels))?;
    Ok(check)
}

/// Checks the metric of every reference, and with `labels` its label too (labels are checked
/// at load time only: at evaluation a policy filtered out of the run is skipped instead).
fn check_refs(check: &Check, labels: Option<&[&str]>) -> Result<(), CheckError> {
    for (label, metric, column) in check.refs() {
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
            let metric_column = column + label.chars().count() + 1;
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

// ---------------------------------------------------------------------------------------------
// Evaluation.

/// The rows of one (scenario, cell, autoscaler).
struct Cell<'a> {
    /// Policy labels in row order.
    policies: Vec<&'a str>,
    means: BTreeMap<&'a str, &'a SummaryRow>,
    runs: BTreeMap<&'a str, BTreeMap<u32, &'a RunRow>>,
}

/// Either a value or why it is undefined.
type Val<T> = Result<T, String>;

/// Formats a value for check output: 4 significant digits, at least one decimal.
fn fnum(x: f64) -> String {
    if !x.is_finite() {
        return super::fmt_value(Some(x), 0);
    }
    if x == 0.0 {
        return "0.0".to_string();
    }
    let magnitude = x.abs().log10().floor() as i32;
    let decimals = (3 - magnitude).clamp(1, 12) as usize;
    let mut s = format!("{x:.decimals$}");
    while s.ends_with('0') && !s.ends_with(".0") {
        s.pop();
    }
    s
}

fn eval_num(n: &Num, lookup: &dyn Fn(&str, &str) -> Val<f64>) -> Val<f64> {
    let v = match n {
        Num::Lit(x) => *x,
        Num::Ref { label, metric, .. } => lookup(label, metric)?,
        Num::Neg(a) => -eval_num(a, lookup)?,
        Num::Bin(op, a, b) => {
            let (x, y) = (eval_num(a, lookup)?, eval_num(b, lookup)?);
            match op {
                ArithOp::Add => x + y,
                ArithOp::Sub => x - y,
                ArithOp::Mul => x * y,
                ArithOp::Div if y == 0.0 => return Err("division by zero".to_string()),
                ArithOp::Div => x / y,
            }
        }
    };
    if v.is_nan() {
        return Err("arithmetic on infinite values is undefined".to_string());
    }
    Ok(v)
}

/// `n` as text, with `all` replaced by the policy it stands for.
fn render(n: &Num, binding: Binding<'_>) -> String {
    let inner = |x: &Num| match x {
        Num::Bin(..) => format!("({})", render(x, binding)),
        _ => render(x, binding),
    };
    match n {
        Num::Lit(x) => format!("{x}"),
        Num::Ref { label, metric, .. } => format!("{}.{metric}", resolve(label, binding)),
        Num::Neg(a) => format!("-{}", inner(a)),
        Num::Bin(op, a, b) => {
            let o = match op {
                ArithOp::Add => "+",
                ArithOp::Sub => "-",
                ArithOp::Mul => "*",
                ArithOp::Div => "/",
            };
            format!("{} {o} {}", inner(a), inner(b))
        }
    }
}

/// Which policy `all` stands for in one instance of a comparison (`None`: no `all`).
type Binding<'a> = Option<&'a str>;

fn resolve<'a>(label: &'a str, binding: Binding<'a>) -> &'a str {
    match (label, binding) {
        ("all", Some(p)) => p,
        _ => label,
    }
}

impl<'a> Cell<'a> {
    fn mean(&self, label: &str, metric: &str) -> Val<f64> {
        let row = self.means.get(label).ok_or_else(|| format!("policy {label:?} was not run"))?;
        row.mean(metric).ok_or_else(|| format!("{label}.{metric} is undefined: no samples"))
    }

    fn run_value(&self, label: &str, metric: &str, rep: u32) -> Val<f64> {
        let row = self
            .runs
            .get(label)
            .and_then(|m| m.get(&rep))
            .ok_or_else(|| format!("no run of {label:?} for replication {rep}"))?;
        row.get(metric).ok_or_else(|| {
            format!("{label}.{metric} is undefined in replication {rep}: no samples")
        })
    }

    /// The policies `all` ranges over in a comparison naming `named` explicitly.
    fn bindings(&self, lhs: &Num, rhs: &Num) -> Val<Vec<Binding<'a>>> {
        let mut refs = Vec::new();
        lhs.refs(&mut refs);
        rhs.refs(&mut refs);
        if !refs.iter().any(|r| r.0 == "all") {
            return Ok(vec![None]);
        }
        let named: BTreeSet<&str> = refs.iter().map(|r| r.0).filter(|l| *l != "all").collect();
        let out: Vec<Binding<'a>> =
            self.policies.iter().filter(|p| !named.contains(**p)).map(|p| Some(*p)).collect();
        if out.is_empty() {
            return Err("`all` matches no policy besides those the comparison names".to_string());
        }
        Ok(out)
    }

    fn eval(&self, c: &Check, details: &mut Vec<String>) -> Val<bool> {
        match c {
            Check::Cmp(op, a, b) => self.quantified(a, b, details, |binding| {
                let look = |l: &str, m: &str| self.mean(resolve(l, binding), m);
                let x = eval_num(a, &look)?;
                let y = eval_num(b, &look)?;
                Ok((op.holds(x, y), format!("{} {} {}", fnum(x), op.symbol(), fnum(y))))
            }),
            Check::Significant(op, a, b) => {
                self.quantified(a, b, details, |binding| self.significant(*op, a, b, binding))
            }
            Check::And(a, b) => {
                let (x, y) = (self.eval(a, details), self.eval(b, details));
                match (x, y) {
                    (Ok(false), _) | (_, Ok(false)) => Ok(false),
                    (Err(e), _) | (_, Err(e)) => Err(e),
                    _ => Ok(true),
                }
            }
            Check::Or(a, b) => {
                let (x, y) = (self.eval(a, details), self.eval(b, details));
                match (x, y) {
                    (Ok(true), _) | (_, Ok(true)) => Ok(true),
                    (Err(e), _) | (_, Err(e)) => Err(e),
                    _ => Ok(false),
                }
            }
            Check::Not(a) => self.eval(a, details).map(|x| !x),
        }
    }

    /// Evaluates a comparison once per binding of `all`; records what it compared.
    fn quantified(
        &self,
        a: &Num,
        b: &Num,
        details: &mut Vec<String>,
        one: impl Fn(Binding<'a>) -> Val<(bool, String)>,
    ) -> Val<bool> {
        let bindings = match self.bindings(a, b) {
            Ok(bs) => bs,
            Err(e) => {
                details.push(e.clone());
                return Err(e);
            }
        };
        let results: Vec<(Binding<'a>, Val<(bool, String)>)> =
            bindings.into_iter().map(|bd| (bd, one(bd))).collect();
        let quantified = results.len() > 1 || results[0].0.is_some();
        let text = |bd: Binding<'a>, s: &str| match bd {
            Some(p) if quantified => format!("{p}: {s}"),
            _ => s.to_string(),
        };
        let failing: Vec<String> = results
            .iter()
            .filter_map(|(bd, r)| match r {
                Ok((false, s)) => Some(text(*bd, s)),
                Err(e) => Some(text(*bd, e)),
                Ok((true, _)) => None,
            })
            .collect();
        if failing.is_empty() {
            let shown: Vec<String> = results
                .iter()
                .filter_map(|(bd, r)| r.as_ref().ok().map(|(_, s)| text(*bd, s)))
                .collect();
            details.push(shown.join(", "));
        } else if quantified {
            details.push(format!("fails for {}", failing.join(", ")));
        } else {
            details.push(failing.join(", "));
        }
        if results.iter().any(|(_, r)| matches!(r, Ok((false, _)))) {
            return Ok(false);
        }
        if let Some((_, Err(e))) = results.iter().find(|(_, r)| r.is_err()) {
            return Err(e.clone());
        }
        Ok(true)
    }

    /// `significant(a op b)` for one binding: the paired 95% CI of `b_r − a_r`.
    fn significant(
        &self,
        op: CmpOp,
        a: &Num,
        b: &Num,
        binding: Binding<'a>,
    ) -> Val<(bool, String)> {
        let mut refs = Vec::new();
        a.refs(&mut refs);
        b.refs(&mut refs);
        let labels: BTreeSet<&str> = refs.iter().map(|r| resolve(r.0, binding)).collect();
        let mut reps: Option<BTreeSet<u32>> = None;
        for l in &labels {
            let have: BTreeSet<u32> =
                self.runs.get(l).map(|m| m.keys().copied().collect()).unwrap_or_default();
            reps = Some(match reps {
                None => have,
                Some(r) => r.intersection(&have).copied().collect(),
            });
        }
        let reps = reps.unwrap_or_default();
        if reps.len() < 2 {
            return Err(format!(
                "significant() needs at least 2 paired replications, have {}",
                reps.len()
            ));
        }
        let mut diffs = Vec::with_capacity(reps.len());
        for &r in &reps {
            let look = |l: &str, m: &str| self.run_value(resolve(l, binding), m, r);
            let d = eval_num(b, &look)? - eval_num(a, &look)?;
            if !d.is_finite() {
                return Err(format!("paired difference in replication {r} is not finite"));
            }
            diffs.push(Some(d));
        }
        let mc = stats::mean_ci(&diffs);
        let (Some(mean), Some(ci)) = (mc.mean, mc.ci95) else {
            return Err("paired differences have no confidence interval".to_string());
        };
        let (lo, hi) = (mean - ci, mean + ci);
        let (holds, claim) = match op {
            CmpOp::Lt => (lo > 0.0, "> 0"),
            CmpOp::Gt => (hi < 0.0, "< 0"),
            _ => (lo > 0.0 || hi < 0.0, "excludes 0"),
        };
        let verdict = if holds { claim.to_string() } else { format!("not {claim}") };
        Ok((
            holds,
            format!(
                "paired {} - {} = {} ± {} over {} replications, 95% CI [{}, {}] {verdict}",
                render(b, binding),
                match a {
                    Num::Bin(..) => format!("({})", render(a, binding)),
                    _ => render(a, binding),
                },
                fnum(mean),
                fnum(ci),
                reps.len(),
                fnum(lo),
                fnum(hi)
            ),
        ))
    }
}

/// Outcome of one check in one cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The check holds.
    Pass,
    /// The check does not hold, or is undefined.
    Fail,
    /// A policy the check names was not run in this cell.
    Skip,
}

/// Evaluates one check (already parsed) on a cell; returns the outcome and the values shown.
fn evaluate(check: &Check, cell: &Cell<'_>) -> (Outcome, String) {
    let missing: Vec<&str> = check
        .refs()
        .iter()
        .map(|r| r.0)
        .filter(|l| *l != "all" && !cell.means.contains_key(l))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(|m| format!("{m:?}")).collect();
        return (Outcome::Skip, format!("policy {} was not run", names.join(", ")));
    }
    let mut details = Vec::new();
    match cell.eval(check, &mut details) {
        Ok(true) => (Outcome::Pass, details.join("; ")),
        Ok(false) => (Outcome::Fail, details.join("; ")),
        Err(e) => {
            if !details.iter().any(|d| d.contains(&e)) {
                details.push(e);
            }
            (Outcome::Fail, details.join("; "))
        }
    }
}

/// Evaluates every scenario's checks in every cell; `failed` if any check fails.
///
/// Cells are taken from `summary` in row order; each is matched to the scenario with the same
/// name and cell index (or, failing that, the same name), whose `checks` apply. Output: one
/// line per check per cell, then a count; empty when no scenario has checks.
pub fn evaluate_all(
    scenarios: &[Scenario],
    summary: &[SummaryRow],
    runs: &[RunRow],
) -> CommandOutput {
    let sets: Vec<CheckSet> = scenarios
        .iter()
        .map(|s| CheckSet { scenario: s.name.clone(), cell: s.cell, checks: s.checks.clone() })
        .collect();
    evaluate_sets(&sets, summary, runs)
}

/// The checks of one scenario cell (from a loaded scenario, or from a manifest after `merge`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSet {
    /// Scenario name.
    pub scenario: String,
    /// Sweep cell.
    pub cell: u32,
    /// Check expressions as written.
    pub checks: Vec<String>,
}

/// Evaluates check sets in every cell of `summary`; `failed` if any check fails.
pub fn evaluate_sets(sets: &[CheckSet], summary: &[SummaryRow], runs: &[RunRow]) -> CommandOutput {
    type GroupKey<'a> = (&'a str, u32, &'a str);
    let mut order: Vec<GroupKey<'_>> = Vec::new();
    let mut cells: BTreeMap<GroupKey<'_>, Cell<'_>> = BTreeMap::new();
    for r in summary {
        let k = (r.key.scenario.as_str(), r.key.cell, r.key.autoscaler.as_str());
        let cell = cells.entry(k).or_insert_with(|| {
            order.push(k);
            Cell { policies: Vec::new(), means: BTreeMap::new(), runs: BTreeMap::new() }
        });
        if cell.means.insert(&r.key.policy, r).is_none() {
            cell.policies.push(&r.key.policy);
        }
    }
    for r in runs {
        let k = (r.key.scenario.as_str(), r.key.cell, r.key.autoscaler.as_str());
        if let Some(cell) = cells.get_mut(&k) {
            cell.runs.entry(&r.key.policy).or_default().insert(r.key.replication, r);
        }
    }
    let mut out = CommandOutput::default();
    let (mut pass, mut fail, mut skip) = (0, 0, 0);
    for k in &order {
        let (name, cell_index, autoscaler) = *k;
        let scenario = sets
            .iter()
            .find(|s| s.scenario == name && s.cell == cell_index)
            .or_else(|| sets.iter().find(|s| s.scenario == name));
        let Some(scenario) = scenario else { continue };
        let cell = &cells[k];
        let params = summary
            .iter()
            .find(|r| r.key.scenario == name && r.key.cell == cell_index)
            .map_or("", |r| r.key.params.as_str());
        let mut place = format!("{name} cell {cell_index}");
        if !params.is_empty() {
            place.push_str(&format!(" ({params})"));
        }
        if autoscaler != "none" {
            place.push_str(&format!(" autoscaler {autoscaler}"));
        }
        for text in &scenario.checks {
            let parsed = parse(text).and_then(|c| check_refs(&c, None).map(|()| c));
            let (outcome, details) = match parsed {
                Ok(check) => evaluate(&check, cell),
                Err(e) => (Outcome::Fail, format!("invalid check: {e}")),
            };
            let tag = match outcome {
                Outcome::Pass => {
                    pass += 1;
                    "PASS"
                }
                Outcome::Fail => {
                    fail += 1;
                    "FAIL"
                }
                Outcome::Skip => {
                    skip += 1;
                    "SKIP"
                }
            };
            out.text.push_str(&format!("{tag} {place}: {}  ({details})\n", text.trim()));
        }
    }
    if pass + fail + skip > 0 {
        out.text.push_str(&format!(
            "checks: {pass} passed, {fail} failed{}\n",
            if skip > 0 { format!(", {skip} skipped") } else { String::new() }
        ));
    }
    out.failed = fail > 0;
    out
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
    fn validation_names_labels_and_metrics() {
        let e = validate("random.ttft_ms_p95 < p2c.ttft_ms_p95", &["random", "round_robin"])
            .expect_err("unknown label");
        assert_eq!(
            e.to_string(),
            "column 22: unknown policy label \"p2c\"; labels: random, round_robin"
        );
        let e = validate("all.ttft_p95 < 1", &["random"]).expect_err("unknown metric");
        assert_eq!(e.column, 5);
        assert!(e.message.contains("did you mean ttft_ms_p95?"), "{}", e.message);
        assert!(validate("all.timeout_rate < 0.01", &["random"]).is_ok());
        assert!(validate("all.timeout_rate < 0.01", &["all"]).is_err());
    }

    #[test]
    fn numbers_format_with_four_significant_digits() {
        assert_eq!(fnum(495.44), "495.4");
        assert_eq!(fnum(1977.8), "1977.8");
        assert_eq!(fnum(0.000312), "0.000312");
        assert_eq!(fnum(0.01), "0.01");
        assert_eq!(fnum(2.0), "2.0");
        assert_eq!(fnum(-3.25), "-3.25");
        assert_eq!(fnum(f64::INFINITY), "inf");
    }
}
