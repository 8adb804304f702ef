//! `routelab compare DIR`: paired differences between policies (to be written).

use super::CommandOutput;
use crate::error::ConfigError;
use std::path::Path;

/// Paired-difference table for the runs in `dir`.
pub fn command(dir: &Path, _baseline: Option<&str>, _metrics: &[String]) -> Result<CommandOutput, ConfigError> {
    Err(ConfigError::file(&dir.display().to_string(), "compare is not available yet"))
}
