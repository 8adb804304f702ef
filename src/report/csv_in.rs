//! Reading `runs.csv` and `summary.csv` back (for merge, resume, compare, gate and plots).
//!
//! The inverse of `csv_out`: columns are looked up by name, so files from a version with more
//! metrics still read; a missing required column or an unparsable number is an error naming
//! the file's line and column. Files without a `group` column (written before result groups
//! existed) read as overall rows only; a `summary.csv` may also lack metric columns of a
//! newer version ([`read_summary_lenient`]: they read as undefined, so the gate can still
//! compare an old baseline on the metrics it has).

use super::stats::MeanCi;
use super::{GroupRow, RunKey, RunRow, SummaryRow, METRICS};

fn header_index(headers: &csv::StringRecord, name: &str) -> Result<usize, String> {
    headers
        .iter()
        .position(|h| h == name)
        .ok_or_else(|| format!("missing column `{name}` (is this a routelab results file?)"))
}

fn parse_opt(s: &str, line: u64, col: &str) -> Result<Option<f64>, String> {
    match s {
        "" => Ok(None),
        "inf" => Ok(Some(f64::INFINITY)),
        "-inf" => Ok(Some(f64::NEG_INFINITY)),
        _ => s
            .parse::<f64>()
            .map(Some)
            .map_err(|_| format!("line {line}: column `{col}` = {s:?} is not a number")),
    }
}

fn parse_int<T: std::str::FromStr>(s: &str, line: u64, col: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("line {line}: column `{col}` = {s:?} is not a whole number"))
}

struct Cols {
    scenario: usize,
    cell: usize,
    params: usize,
    policy: usize,
    autoscaler: usize,
}

fn key_cols(h: &csv::StringRecord) -> Result<Cols, String> {
    Ok(Cols {
        scenario: header_index(h, "scenario")?,
        cell: header_index(h, "cell")?,
        params: header_index(h, "params")?,
        policy: header_index(h, "policy")?,
        autoscaler: header_index(h, "autoscaler")?,
    })
}

fn key(rec: &csv::StringRecord, c: &Cols, line: u64, replication: u32) -> Result<RunKey, String> {
    Ok(RunKey {
        scenario: rec[c.scenario].to_string(),
        cell: parse_int(&rec[c.cell], line, "cell")?,
        params: rec[c.params].to_string(),
        policy: rec[c.policy].to_string(),
        autoscaler: rec[c.autoscaler].to_string(),
        replication,
    })
}

/// Parses the text of a `runs.csv`.
pub fn read_runs(text: &str) -> Result<Vec<RunRow>, String> {
    let mut rdr = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let h = rdr.headers().map_err(|e| format!("cannot read the header: {e}"))?.clone();
    let c = key_cols(&h)?;
    let (rep, seed) = (header_index(&h, "replication")?, header_index(&h, "seed")?);
    let metric_cols: Vec<usize> =
        METRICS.iter().map(|d| header_index(&h, d.name)).collect::<Result<_, _>>()?;
    let group = h.iter().position(|x| x == "group");
    let mut out: Vec<RunRow> = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| format!("malformed CSV: {e}"))?;
        let line = rec.position().map_or(0, |p| p.line());
        let replication = parse_int(&rec[rep], line, "replication")?;
        let values = METRICS
            .iter()
            .zip(&metric_cols)
            .map(|(d, &i)| parse_opt(&rec[i], line, d.name))
            .collect::<Result<_, _>>()?;
        let k = key(&rec, &c, line, replication)?;
        let label = group.map_or("all", |i| &rec[i]);
        if label != "all" {
            match out.last_mut() {
                Some(r) if r.key == k => {
                    r.groups.push(GroupRow { label: label.to_string(), values });
                    continue;
                }
                _ => {
                    return Err(format!(
                        "line {line}: group row `{label}` does not follow its run's `all` row"
                    ))
                }
            }
        }
        out.push(RunRow {
            key: k,
            seed: parse_int(&rec[seed], line, "seed")?,
            values,
            groups: Vec::new(),
        });
    }
    Ok(out)
}

/// Parses the text of a `summary.csv`.
pub fn read_summary(text: &str) -> Result<Vec<SummaryRow>, String> {
    read_summary_lenient(text).map(|(rows, _)| rows)
}

/// Parses the text of a `summary.csv`, also from a version with fewer metrics: a metric
/// whose column (or `_ci95` column) is missing reads as undefined, and is listed in the
/// second value. The key columns are required.
pub fn read_summary_lenient(text: &str) -> Result<(Vec<SummaryRow>, Vec<&'static str>), String> {
    let mut rdr = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let h = rdr.headers().map_err(|e| format!("cannot read the header: {e}"))?.clone();
    let c = key_cols(&h)?;
    let reps = header_index(&h, "replications")?;
    let group = h.iter().position(|x| x == "group");
    let find = |name: &str| h.iter().position(|x| x == name);
    let cols: Vec<Option<(usize, usize)>> =
        METRICS.iter().map(|d| Some((find(d.name)?, find(&format!("{}_ci95", d.name))?))).collect();
    let missing: Vec<&'static str> =
        METRICS.iter().zip(&cols).filter(|(_, c)| c.is_none()).map(|(d, _)| d.name).collect();
    if missing.len() == METRICS.len() {
        return Err(format!(
            "missing column `{}` and every other metric (is this a routelab summary.csv?)",
            METRICS[0].name
        ));
    }
    let mut out = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| format!("malformed CSV: {e}"))?;
        let line = rec.position().map_or(0, |p| p.line());
        let values = METRICS
            .iter()
            .zip(&cols)
            .map(|(d, col)| match *col {
                None => Ok(MeanCi { mean: None, ci95: None }),
                Some((m, ci)) => Ok(MeanCi {
                    mean: parse_opt(&rec[m], line, d.name)?,
                    ci95: parse_opt(&rec[ci], line, &format!("{}_ci95", d.name))?,
                }),
            })
            .collect::<Result<_, String>>()?;
        out.push(SummaryRow {
            key: key(&rec, &c, line, 0)?,
            group: group.map_or("all", |i| &rec[i]).to_string(),
            replications: parse_int(&rec[reps], line, "replications")?,
            values,
        });
    }
    Ok((out, missing))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{csv_out, summarize};

    fn row(policy: &str, rep: u32, x: f64) -> RunRow {
        let values: Vec<Option<f64>> = METRICS
            .iter()
            .enumerate()
            .map(|(i, d)| match i {
                0 => Some(100.0),
                1 => None,
                2 => Some(f64::INFINITY),
                _ => crate::report::round_to(Some(x * (i as f64 + 0.123_456_7)), d.precision),
            })
            .collect();
        RunRow {
            key: RunKey {
                scenario: "s".into(),
                cell: 3,
                params: "a.b=1;c=x".into(),
                policy: policy.into(),
                autoscaler: "none".into(),
                replication: rep,
            },
            seed: 12_345_678_901,
            groups: vec![GroupRow { label: "class:a".into(), values: values.clone() }],
            values,
        }
    }

    #[test]
    fn runs_and_summary_round_trip_through_csv() {
        let rows = vec![row("p", 0, 1.5), row("p", 1, 2.5), row("q", 0, 3.0)];
        let text = String::from_utf8(csv_out::runs_csv(&rows)).expect("utf-8");
        let back = read_runs(&text).expect("parses");
        assert_eq!(back, rows);
        assert_eq!(csv_out::runs_csv(&back), text.as_bytes());
        let summary = summarize(&rows);
        let stext = String::from_utf8(csv_out::summary_csv(&summary)).expect("utf-8");
        let sback = read_summary(&stext).expect("parses");
        assert_eq!(csv_out::summary_csv(&sback), stext.as_bytes());
    }

    #[test]
    fn bad_files_are_errors() {
        assert!(read_runs("a,b\n1,2\n").expect_err("no columns").contains("missing column"));
        let rows = vec![row("p", 0, 1.5)];
        let text = String::from_utf8(csv_out::runs_csv(&rows)).expect("utf-8");
        let broken = text.replace("12345678901", "twelve");
        assert!(read_runs(&broken).expect_err("bad seed").contains("line 2"));
    }
}
