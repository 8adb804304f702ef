//! `checks:` expressions over policy metrics (to be written).

use super::{CommandOutput, RunRow, SummaryRow};
use crate::scenario::Scenario;

/// Evaluates every scenario's checks in every cell; `failed` if any check fails.
pub fn evaluate_all(scenarios: &[Scenario], summary: &[SummaryRow], runs: &[RunRow]) -> CommandOutput {
    let _ = (scenarios, summary, runs);
    CommandOutput::default()
}
