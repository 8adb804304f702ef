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
//! - **Autoscalers.** A check whose labels (besides `all`) are all autoscaler labels of the
//!   scenario compares autoscalers instead, once per policy (`hpa-queue.ttft_ms_p95 <
//!   hpa-util.ttft_ms_p95`, printed as `... policy least_requests: ...`), with `all` ranging
//!   over the autoscalers; any other check compares policies, once per autoscaler. A label
//!   that is both a policy's and an autoscaler's is the policy's; one check cannot mix the two
//!   (a load error).
//! - A check naming a policy that was not run in the cell (e.g. filtered out with `--policy`)
//!   is reported as `SKIP` and is not a failure.
//!
//! Evaluation is a pure function of the rows, so the printed lines are deterministic.

use super::stats;
use super::{metric_index, CommandOutput, RunRow, SummaryRow};
use crate::scenario::check_expr::*;
use crate::scenario::Scenario;
use std::collections::{BTreeMap, BTreeSet};
// ---------------------------------------------------------------------------------------------
// Evaluation.

/// What a check's labels name: the policies of one autoscaler, or the autoscalers of one
/// policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Dim {
    Policy,
    Autoscaler,
}

/// The rows of one (scenario, cell) and one value of the other dimension: the policies run
/// with one autoscaler, or the autoscalers run with one policy — the *arms* a check compares.
struct Cell<'a> {
    /// Arm labels in row order.
    policies: Vec<&'a str>,
    /// Summary rows by (arm, result group).
    means: BTreeMap<(&'a str, &'a str), &'a SummaryRow>,
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

/// `label` with `all` replaced by the policy it stands for (its group kept).
fn resolve(label: &str, binding: Binding<'_>) -> String {
    let (policy, group) = split_group(label);
    match (policy, binding) {
        ("all", Some(p)) if group == "all" => p.to_string(),
        ("all", Some(p)) => format!("{p}[{group}]"),
        _ => label.to_string(),
    }
}

impl<'a> Cell<'a> {
    fn mean(&self, label: &str, metric: &str) -> Val<f64> {
        let (policy, group) = split_group(label);
        let row = self.means.get(&(policy, group)).ok_or_else(|| {
            if group == "all" {
                format!("{policy:?} was not run")
            } else {
                format!("{label} has no rows (group {group:?} had no requests)")
            }
        })?;
        row.mean(metric).ok_or_else(|| format!("{label}.{metric} is undefined: no samples"))
    }

    fn run_value(&self, label: &str, metric: &str, rep: u32) -> Val<f64> {
        let (policy, group) = split_group(label);
        let row = self
            .runs
            .get(policy)
            .and_then(|m| m.get(&rep))
            .ok_or_else(|| format!("no run of {policy:?} for replication {rep}"))?;
        let i = metric_index(metric).ok_or_else(|| format!("unknown metric {metric:?}"))?;
        row.group_values(group).and_then(|v| v[i]).ok_or_else(|| {
            format!("{label}.{metric} is undefined in replication {rep}: no samples")
        })
    }

    /// The policies `all` ranges over in a comparison naming `named` explicitly.
    fn bindings(&self, lhs: &Num, rhs: &Num) -> Val<Vec<Binding<'a>>> {
        let mut refs = Vec::new();
        lhs.refs(&mut refs);
        rhs.refs(&mut refs);
        if !refs.iter().any(|r| split_group(r.0).0 == "all") {
            return Ok(vec![None]);
        }
        let named: BTreeSet<&str> =
            refs.iter().map(|r| split_group(r.0).0).filter(|l| *l != "all").collect();
        let out: Vec<Binding<'a>> =
            self.policies.iter().filter(|p| !named.contains(**p)).map(|p| Some(*p)).collect();
        if out.is_empty() {
            return Err("`all` matches nothing besides what the comparison names".to_string());
        }
        Ok(out)
    }

    fn eval(&self, c: &Check, details: &mut Vec<String>) -> Val<bool> {
        match c {
            Check::Cmp(op, a, b) => self.quantified(a, b, details, |binding| {
                let look = |l: &str, m: &str| self.mean(&resolve(l, binding), m);
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
        let labels: BTreeSet<String> = refs.iter().map(|r| resolve(r.0, binding)).collect();
        let mut reps: Option<BTreeSet<u32>> = None;
        for l in &labels {
            let have: BTreeSet<u32> = self
                .runs
                .get(split_group(l).0)
                .map(|m| m.keys().copied().collect())
                .unwrap_or_default();
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
            let look = |l: &str, m: &str| self.run_value(&resolve(l, binding), m, r);
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
        .map(|r| split_group(r.0).0)
        .filter(|l| *l != "all" && !cell.means.contains_key(&(*l, "all")))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(|m| format!("{m:?}")).collect();
        return (Outcome::Skip, format!("{} was not run", names.join(", ")));
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
///
/// A check whose labels are all autoscaler labels of its cell (and not policy labels) compares
/// autoscalers, once per policy; any other check compares policies, once per autoscaler.
pub fn evaluate_sets(sets: &[CheckSet], summary: &[SummaryRow], runs: &[RunRow]) -> CommandOutput {
    type GroupKey<'a> = (&'a str, u32, Dim, &'a str);
    let mut order: Vec<GroupKey<'_>> = Vec::new();
    let mut cells: BTreeMap<GroupKey<'_>, Cell<'_>> = BTreeMap::new();
    // Labels of each dimension per (scenario, cell).
    let mut labels: BTreeMap<(&str, u32, Dim), BTreeSet<&str>> = BTreeMap::new();
    for dim in [Dim::Policy, Dim::Autoscaler] {
        for r in summary {
            let (arm, other) = match dim {
                Dim::Policy => (r.key.policy.as_str(), r.key.autoscaler.as_str()),
                Dim::Autoscaler => (r.key.autoscaler.as_str(), r.key.policy.as_str()),
            };
            labels.entry((&r.key.scenario, r.key.cell, dim)).or_default().insert(arm);
            let k = (r.key.scenario.as_str(), r.key.cell, dim, other);
            let cell = cells.entry(k).or_insert_with(|| {
                order.push(k);
                Cell { policies: Vec::new(), means: BTreeMap::new(), runs: BTreeMap::new() }
            });
            if cell.means.insert((arm, &r.group), r).is_none() && r.group == "all" {
                cell.policies.push(arm);
            }
        }
        for r in runs {
            let (arm, other) = match dim {
                Dim::Policy => (r.key.policy.as_str(), r.key.autoscaler.as_str()),
                Dim::Autoscaler => (r.key.autoscaler.as_str(), r.key.policy.as_str()),
            };
            if let Some(cell) = cells.get_mut(&(r.key.scenario.as_str(), r.key.cell, dim, other)) {
                cell.runs.entry(arm).or_default().insert(r.key.replication, r);
            }
        }
    }
    let empty = BTreeSet::new();
    let mut out = CommandOutput::default();
    let (mut pass, mut fail, mut skip) = (0, 0, 0);
    for k in &order {
        let (name, cell_index, dim, other) = *k;
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
        match dim {
            Dim::Policy if other != "none" => place.push_str(&format!(" autoscaler {other}")),
            Dim::Policy => {}
            Dim::Autoscaler => place.push_str(&format!(" policy {other}")),
        }
        let policies = labels.get(&(name, cell_index, Dim::Policy)).unwrap_or(&empty);
        let scalers = labels.get(&(name, cell_index, Dim::Autoscaler)).unwrap_or(&empty);
        for text in &scenario.checks {
            let parsed = parse(text).and_then(|c| check_refs(&c, None).map(|()| c));
            if let Ok(check) = &parsed {
                if dim_of(check, policies, scalers) != dim {
                    continue;
                }
            } else if dim != Dim::Policy {
                continue;
            }
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

/// What `check` compares: autoscalers when every label it names is an autoscaler of the cell
/// and not a policy; policies otherwise (so a check naming a policy that was filtered out is
/// still a policy check, and skipped).
fn dim_of(check: &Check, policies: &BTreeSet<&str>, scalers: &BTreeSet<&str>) -> Dim {
    let refs = check.refs();
    let named: Vec<&str> =
        refs.iter().map(|r| split_group(r.0).0).filter(|l| *l != "all").collect();
    let autoscalers =
        !named.is_empty() && named.iter().all(|l| scalers.contains(l) && !policies.contains(l));
    if autoscalers {
        Dim::Autoscaler
    } else {
        Dim::Policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
