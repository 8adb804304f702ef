//! `runs.csv` and `summary.csv` as bytes. Pure functions; columns fixed by `METRICS`.

use super::{fmt_value, RunRow, SummaryRow, METRICS};

fn writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new())
}

fn finish(w: csv::Writer<Vec<u8>>) -> Vec<u8> {
    // Writing into a Vec cannot fail.
    w.into_inner().unwrap_or_default()
}

/// `runs.csv`: one row per run (group `all`), each followed by its group rows.
pub fn runs_csv(rows: &[RunRow]) -> Vec<u8> {
    let mut w = writer();
    let mut header =
        vec!["scenario", "cell", "params", "policy", "autoscaler", "group", "replication", "seed"];
    header.extend(METRICS.iter().map(|d| d.name));
    let _ = w.write_record(&header);
    for r in rows {
        let groups = std::iter::once(("all", &r.values))
            .chain(r.groups.iter().map(|g| (g.label.as_str(), &g.values)));
        for (label, values) in groups {
            let mut rec = vec![
                r.key.scenario.clone(),
                r.key.cell.to_string(),
                r.key.params.clone(),
                r.key.policy.clone(),
                r.key.autoscaler.clone(),
                label.to_string(),
                r.key.replication.to_string(),
                r.seed.to_string(),
            ];
            rec.extend(METRICS.iter().zip(values).map(|(d, v)| fmt_value(*v, d.precision)));
            let _ = w.write_record(&rec);
        }
    }
    finish(w)
}

/// `summary.csv`: per group, each metric's mean and 95% CI half-width (`<metric>_ci95`).
pub fn summary_csv(rows: &[SummaryRow]) -> Vec<u8> {
    let mut w = writer();
    let mut header: Vec<String> =
        ["scenario", "cell", "params", "policy", "autoscaler", "group", "replications"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    for d in METRICS {
        header.push(d.name.to_string());
        header.push(format!("{}_ci95", d.name));
    }
    let _ = w.write_record(&header);
    for r in rows {
        let mut rec = vec![
            r.key.scenario.clone(),
            r.key.cell.to_string(),
            r.key.params.clone(),
            r.key.policy.clone(),
            r.key.autoscaler.clone(),
            r.group.clone(),
            r.replications.to_string(),
        ];
        for (d, v) in METRICS.iter().zip(&r.values) {
            rec.push(fmt_value(v.mean, d.precision));
            rec.push(fmt_value(v.ci95, d.precision));
        }
        let _ = w.write_record(&rec);
    }
    finish(w)
}
