//! A result directory as a whole: writing every file of a run from its rows and records, and
//! reading one back (for `merge` and `--resume`).
//!
//! Files: `runs.csv`, `summary.csv`, `summary.md`, `quantiles.csv`, `routing.csv`,
//! `timeseries.csv` (when sampled), `health.csv` and `faults.csv` (with faults or health
//! checks), `decisions.csv` (when traced), `manifest.json`, each
//! replaced atomically. Rows and records are put in plan order
//! first, so a directory's bytes depend only on what ran, not on how (threads, shards, resume).

use super::artifacts::{self, keyed_csv, read_keyed, record_key};
use super::manifest::Manifest;
use super::write::atomic_write;
use super::{csv_in, csv_out, markdown, summarize, RunKey, RunRow};
use crate::error::{ConfigError, OutputError};
use std::collections::BTreeMap;
use std::path::Path;

/// Everything a result directory holds.
#[derive(Debug, Clone)]
pub struct ResultSet {
    /// `runs.csv` rows.
    pub runs: Vec<RunRow>,
    /// `quantiles.csv` records.
    pub quantiles: Vec<Vec<String>>,
    /// `timeseries.csv` records.
    pub timeseries: Vec<Vec<String>>,
    /// `routing.csv` records.
    pub routing: Vec<Vec<String>>,
    /// `decisions.csv` records.
    pub decisions: Vec<Vec<String>>,
    /// `health.csv` records.
    pub health: Vec<Vec<String>>,
    /// `faults.csv` records.
    pub faults: Vec<Vec<String>>,
    /// The manifest.
    pub manifest: Manifest,
}

impl ResultSet {
    /// Sorts rows and records by their run's position in the plan (stable within a run) and
    /// drops anything not in the plan.
    /// Rows whose run appears twice keep their first copy; records of runs without a row
    /// (left over from an interrupted write) are dropped.
    pub fn sort(&mut self, positions: &BTreeMap<RunKey, usize>) {
        let mut seen = std::collections::BTreeSet::new();
        self.runs.retain(|r| positions.contains_key(&r.key) && seen.insert(r.key.clone()));
        self.runs.sort_by_key(|r| positions[&r.key]);
        for recs in [
            &mut self.quantiles,
            &mut self.timeseries,
            &mut self.routing,
            &mut self.decisions,
            &mut self.health,
            &mut self.faults,
        ] {
            recs.retain(|r| record_key(r).is_some_and(|k| seen.contains(&k)));
            recs.sort_by_key(|r| record_key(r).map(|k| positions[&k]));
        }
    }

    /// Writes every file into `dir` (`summary.md` with the tables by group); returns the
    /// overall markdown summary, what `run` prints.
    /// `runs.csv` is written last: a run counts as done (for `--resume`) only once its row is
    /// there, and by then its detail records are too.
    pub fn write(&self, dir: &Path) -> Result<String, OutputError> {
        let summary = summarize(&self.runs);
        let md = markdown::summary_md(&summary, false);
        let md_file = markdown::summary_md(&summary, true);
        atomic_write(&dir.join("manifest.json"), self.manifest.to_json().as_bytes())?;
        atomic_write(
            &dir.join("quantiles.csv"),
            &keyed_csv(&artifacts::quantiles_header(), &self.quantiles),
        )?;
        if !self.timeseries.is_empty() {
            atomic_write(
                &dir.join("timeseries.csv"),
                &keyed_csv(&artifacts::timeseries_header(), &self.timeseries),
            )?;
        }
        atomic_write(
            &dir.join("routing.csv"),
            &keyed_csv(&artifacts::routing_header(), &self.routing),
        )?;
        if !self.decisions.is_empty() {
            atomic_write(
                &dir.join("decisions.csv"),
                &keyed_csv(&artifacts::decisions_header(), &self.decisions),
            )?;
        }
        if !self.health.is_empty() {
            atomic_write(
                &dir.join("health.csv"),
                &keyed_csv(&artifacts::health_header(), &self.health),
            )?;
        }
        if !self.faults.is_empty() {
            atomic_write(
                &dir.join("faults.csv"),
                &keyed_csv(&artifacts::faults_header(), &self.faults),
            )?;
        }
        atomic_write(&dir.join("summary.csv"), &csv_out::summary_csv(&summary))?;
        atomic_write(&dir.join("summary.md"), md_file.as_bytes())?;
        atomic_write(&dir.join("runs.csv"), &csv_out::runs_csv(&self.runs))?;
        Ok(md)
    }

    /// Reads the result directory `dir`.
    pub fn read(dir: &Path) -> Result<ResultSet, ConfigError> {
        let read = |name: &str| -> Result<Option<String>, ConfigError> {
            let p = dir.join(name);
            match std::fs::read_to_string(&p) {
                Ok(t) => Ok(Some(t)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => {
                    Err(ConfigError::file(&p.display().to_string(), format!("cannot read: {e}")))
                }
            }
        };
        let bad =
            |name: &str, msg: String| ConfigError::file(&dir.join(name).display().to_string(), msg);
        let manifest_text = read("manifest.json")?.ok_or_else(|| {
            bad("manifest.json", "missing: not a routelab result directory".into())
        })?;
        let manifest = Manifest::from_json(&manifest_text).map_err(|m| bad("manifest.json", m))?;
        let runs = match read("runs.csv")? {
            Some(t) => csv_in::read_runs(&t).map_err(|m| bad("runs.csv", m))?,
            None => return Err(bad("runs.csv", "missing: not a routelab result directory".into())),
        };
        let records = |name: &str| -> Result<Vec<Vec<String>>, ConfigError> {
            match read(name)? {
                Some(t) => Ok(read_keyed(&t).map_err(|m| bad(name, m))?.1),
                None => Ok(Vec::new()),
            }
        };
        Ok(ResultSet {
            runs,
            quantiles: records("quantiles.csv")?,
            timeseries: records("timeseries.csv")?,
            routing: records("routing.csv")?,
            decisions: records("decisions.csv")?,
            health: records("health.csv")?,
            faults: records("faults.csv")?,
            manifest,
        })
    }
}
