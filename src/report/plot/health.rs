//! The `health` plot: every replica's state over the time-series run, one strip per replica
//! and one panel per policy, coloured by state (ready, degraded, ejected, failed,
//! recovering or starting, draining, off), fault windows outlined. Drawn only when some replica left the ready state.

use super::charts::{axes, styles, AxesOpts, Head, Plot};
use super::data::{HealthGrid, ScenarioData, HEALTH_STATES};
use super::style::{err, frame, Axis, LegendEntry, Pen, Swatch};
use plotters::coord::Shift;
use plotters::prelude::*;

/// State colours, in [`HEALTH_STATES`] order.
const STATE_COLORS: [RGBColor; 7] = [
    RGBColor(0xD9, 0xEA, 0xD3), // ready: pale green
    RGBColor(0xED, 0xC9, 0x48), // degraded: yellow
    RGBColor(0xF2, 0x8E, 0x2B), // ejected: orange
    RGBColor(0xE1, 0x57, 0x59), // failed: red
    RGBColor(0x4E, 0x79, 0xA7), // recovering (or starting): blue
    RGBColor(0xB0, 0x7A, 0xA1), // draining: purple
    RGBColor(0xF4, 0xF4, 0xF4), // off (not provisioned): near white
];

/// Replica states over time per policy.
#[derive(Debug, Clone)]
pub struct Health {
    pub(super) head: Head,
    /// (policy label, grid).
    panels: Vec<(String, HealthGrid)>,
    faults: Vec<(f64, f64)>,
    replicas: usize,
}

impl Health {
    /// Canvas height: a strip of 18 px per replica per panel, and panels tall enough for
    /// their (vertical) policy label.
    pub fn height(&self) -> u32 {
        let label_chars = self.panels.iter().map(|(l, _)| l.chars().count()).max().unwrap_or(0);
        let per = (60 + 18 * self.replicas as u32).max(40 + 10 * label_chars as u32).max(110);
        170 + per * self.panels.len() as u32
    }
}

/// The plot, when some replica of some policy was ever not ready.
pub fn build(sc: &ScenarioData, name: &str) -> Option<Plot> {
    let (cell, rep) = sc.timeseries_run?;
    let interesting = sc.health.values().any(|g| g.states.iter().flatten().any(|&s| s != 0));
    if !interesting {
        return None;
    }
    let labels = styles(sc);
    let panels: Vec<(String, HealthGrid)> =
        sc.health.iter().map(|(&s, g)| (labels[s].label.clone(), g.clone())).collect();
    let replicas = panels.iter().map(|(_, g)| g.states.len()).max().unwrap_or(0);
    let at = sc.cell_title(cell);
    Some(Plot::Health(Health {
        head: Head {
            name: name.to_string(),
            title: format!("{}: replica health over time", sc.name),
            subtitle: format!(
                "replica r: strip above tick r; replication {rep}{}; as gateway 0 sees them; outlined: faults",
                if at.is_empty() { String::new() } else { format!(", {at}") }
            ),
        },
        panels,
        faults: sc.faults.iter().map(|(a, b, _)| (*a, *b)).collect(),
        replicas,
    }))
}

/// Draws the panels.
pub fn draw<DB: DrawingBackend>(
    p: &Health,
    pen: &Pen,
    root: &DrawingArea<DB, Shift>,
) -> Result<(), String> {
    let legend: Vec<LegendEntry> = HEALTH_STATES
        .iter()
        .zip(STATE_COLORS)
        .map(|(s, c)| LegendEntry { label: s.to_string(), color: c, swatch: Swatch::Box })
        .collect();
    let area = frame(pen, root, &p.head.title, &p.head.subtitle, &legend)?;
    let t_max = p.panels.iter().filter_map(|(_, g)| g.t.last().copied()).fold(0.0, f64::max);
    let x = Axis::linear(0.0, t_max.max(1.0), 8, true);
    let n = p.panels.len() as i32;
    let h = area.dim_in_pixel().1 as i32;
    let each = (h - 80) / n.max(1);
    let mut parts = Vec::new();
    let mut rest = area.clone();
    for _ in 1..n {
        let (top, bottom) = rest.split_vertically(each);
        parts.push(top);
        rest = bottom;
    }
    parts.push(rest);
    let rows = p.replicas.max(1) as f64;
    let y = Axis::linear(0.0, rows, p.replicas.clamp(1, 8), false);
    for (i, ((label, g), part)) in p.panels.iter().zip(&parts).enumerate() {
        let is_last = i + 1 == parts.len();
        let desc = label.clone();
        let mut chart = axes(
            pen,
            part,
            &x,
            &y,
            &AxesOpts {
                x_desc: if is_last { "simulated time (s)" } else { "" },
                y_desc: &desc,
                x_names: None,
                x_labels: is_last,
                x_grid: true,
                y_label_w: 0,
            },
        )?;
        let dt = if g.t.len() > 1 { g.t[1] - g.t[0] } else { 1.0 };
        for (r, row) in g.states.iter().enumerate() {
            // Runs of one state become one rectangle.
            let mut k = 0;
            while k < row.len() {
                let s = row[k];
                let mut j = k + 1;
                while j < row.len() && row[j] == s {
                    j += 1;
                }
                let a = g.t[k] - dt;
                let b = g.t[j - 1];
                let yr = r as f64;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(a.max(0.0), yr + 0.12), (b, yr + 0.88)],
                        STATE_COLORS[s as usize].filled(),
                    )))
                    .map_err(err)?;
                k = j;
            }
        }
        for &(a, b) in &p.faults {
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(a, 0.0), (b.min(t_max), rows)],
                    RGBColor(0xE1, 0x57, 0x59).stroke_width(2),
                )))
                .map_err(err)?;
        }
    }
    Ok(())
}
