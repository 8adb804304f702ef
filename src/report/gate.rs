//! `routelab gate`: regression gate between two summary.csv files (to be written).

use super::CommandOutput;
use crate::error::ConfigError;
use std::path::Path;

/// Compares `current` against `baseline`.
pub fn command(
    baseline: &Path,
    _current: &Path,
    _metrics: &[String],
    _tolerances: &[f64],
) -> Result<CommandOutput, ConfigError> {
    Err(ConfigError::file(&baseline.display().to_string(), "gate is not available yet"))
}
