//! Plots of a result directory (to be written).

use crate::error::ConfigError;
use std::path::{Path, PathBuf};

/// Draws every plot for the results in `dir`; returns the files written.
pub fn draw_dir(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let _ = dir;
    Ok(Vec::new())
}
