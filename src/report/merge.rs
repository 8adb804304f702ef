//! `routelab merge`: shard directories into one result (to be written).

use crate::error::ConfigError;
use std::path::{Path, PathBuf};

/// Merges shard result directories into `out`.
pub fn merge_dirs(dirs: &[PathBuf], out: &Path) -> Result<String, ConfigError> {
    let _ = (dirs, out);
    Err(ConfigError::file("merge", "not available yet"))
}
