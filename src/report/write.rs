//! Writing result files atomically: each file is written to a temporary sibling and renamed
//! into place, so an interrupted or failed run never leaves a half-written file and never
//! clobbers earlier results with partial ones.

use crate::error::OutputError;
use std::path::Path;

/// Writes `bytes` to `path` atomically, creating parent directories.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    let io = |p: &Path, source| OutputError::Io { path: p.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        }
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(path, e)
    })
}
