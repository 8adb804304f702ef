//! The `replicas` plot: replicas by lifecycle state over the time-series run, stacked (ready
//! at the bottom, then draining, loading, provisioning), one panel per autoscaler of the first
//! policy — or per policy when the scenario has one autoscaler — at most [`MAX_PANELS`].
//! Above each panel two strips give the context the autoscaler saw: the offered load
//! (`arrivals_per_s`) and the p95 TTFT of each sample window (`ttft_p95_ms`), each drawn when
//! `timeseries.csv` has it. All panels share their axes.
//!
//! Skipped when `timeseries.csv` lacks the four state columns or no replica ever changes state
//! (a fixed cluster). State colours are from the Okabe–Ito palette, distinguishable with the
//! common colour-vision deficiencies; the TTFT line takes the series' colour.

use super::charts::{axes, fmt_short, styles, AxesOpts, Head, Plot, MAX_POINTS};
use super::data::{ScenarioData, TimeSeries};
use super::style::{err, frame, label_width, Axis, LegendEntry, Pen, Swatch, GREY, INK, TEXT_PX};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Most panels drawn.
pub const MAX_PANELS: usize = 6;

/// The stacked states, bottom to top: column and colour (Okabe–Ito).
const STATES: [(&str, RGBColor); 4] = [
    ("ready", RGBColor(0x00, 0x72, 0xB2)),        // blue
    ("draining", RGBColor(0xCC, 0x79, 0xA7)),     // reddish purple
    ("loading", RGBColor(0x00, 0x9E, 0x73)),      // bluish green
    ("provisioning", RGBColor(0xE6, 0x9F, 0x00)), // orange
];

/// Grey of the offered-load area.
const LOAD_FILL: RGBColor = RGBColor(0xBB, 0xBB, 0xBB);

/// Heights (px) of a panel's parts.
const HEADING_PX: i32 = 40;
const STRIP_PX: i32 = 140;
const STATES_PX: i32 = 250;
/// Room below the last panel for the x axis description.
const FOOT_PX: i32 = 50;

/// One panel: a series' samples, window-averaged.
#[derive(Debug, Clone)]
struct Panel {
    label: String,
    color: RGBColor,
    /// Sample times (s).
    t: Vec<f64>,
    /// Replicas per state, in [`STATES`] order.
    states: [Vec<f64>; 4],
    /// Arrivals per second (NaN where absent).
    load: Vec<f64>,
    /// p95 TTFT in ms (NaN where the window had no first token).
    ttft: Vec<f64>,
}

/// Replicas by state over time, per autoscaler (or policy).
#[derive(Debug, Clone)]
pub struct Replicas {
    pub(super) head: Head,
    panels: Vec<Panel>,
    /// Draw the load strips / the TTFT strips.
    load: bool,
    ttft: bool,
    /// Width of one sample window (s), after averaging.
    step_s: f64,
    /// TTFT strip description: seconds when some window's p95 exceeds 10 s, else ms.
    ttft_desc: &'static str,
}

impl Replicas {
    fn panel_px(&self) -> i32 {
        HEADING_PX + STRIP_PX * (i32::from(self.load) + i32::from(self.ttft)) + STATES_PX
    }

    /// Canvas height: title and subtitle, the panels, the x axis description.
    pub fn height(&self) -> u32 {
        (150 + self.panel_px() * self.panels.len() as i32 + FOOT_PX) as u32
    }
}

/// Mean of the finite values of each window of `k` samples (NaN for a window without any).
fn window_means(v: &[f64], k: usize) -> Vec<f64> {
    v.chunks(k.max(1))
        .map(|w| {
            let (sum, n) =
                w.iter().filter(|x| x.is_finite()).fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
            if n > 0 {
                sum / n as f64
            } else {
                f64::NAN
            }
        })
        .collect()
}

fn column(ts: &TimeSeries, name: &str) -> Option<Vec<f64>> {
    ts.columns.get(name).cloned()
}

/// The series drawn: autoscalers of the first policy when there are several, else policies.
fn chosen(sc: &ScenarioData) -> (Vec<usize>, &'static str) {
    let first = sc.series.first().map(|s| (s.key.policy.clone(), s.key.autoscaler.clone()));
    let Some((policy, autoscaler)) = first else { return (Vec::new(), "policy") };
    let several = sc.series.iter().any(|s| s.key.autoscaler != autoscaler);
    let all = 0..sc.series.len();
    if several {
        (all.filter(|&i| sc.series[i].key.policy == policy).collect(), "autoscaler")
    } else {
        (all.collect(), "policy")
    }
}

/// The plot, when the time series has replica states and some replica changed state.
pub fn build(sc: &ScenarioData, name: &str) -> Option<Plot> {
    let (cell, rep) = sc.timeseries_run?;
    let (order, by) = chosen(sc);
    let candidates: Vec<(usize, &TimeSeries)> =
        order.iter().filter_map(|&s| sc.timeseries.get(&s).map(|ts| (s, ts))).collect();
    let with_states: Vec<(usize, &TimeSeries)> = candidates
        .into_iter()
        .filter(|(_, ts)| STATES.iter().all(|(c, _)| ts.columns.contains_key(*c)))
        .collect();
    let changes = |ts: &TimeSeries| {
        STATES.iter().any(|(c, _)| {
            let v = &ts.columns[*c];
            v.iter().any(|x| x.is_finite() && Some(x) != v.first())
        })
    };
    if !with_states.iter().any(|(_, ts)| changes(ts)) {
        return None;
    }
    let total = with_states.len();
    let shown: Vec<(usize, &TimeSeries)> = with_states.into_iter().take(MAX_PANELS).collect();
    let longest = shown.iter().map(|(_, ts)| ts.t.len()).max().unwrap_or(0);
    let k = longest.div_ceil(MAX_POINTS).max(1);
    let interval =
        shown.iter().find(|(_, ts)| ts.t.len() > 1).map_or(1.0, |(_, ts)| ts.t[1] - ts.t[0]);
    let looks = styles(sc);
    let panels: Vec<Panel> = shown
        .iter()
        .map(|&(s, ts)| {
            let nan = || vec![f64::NAN; ts.t.len()];
            let state = |i: usize| {
                let v = column(ts, STATES[i].0).unwrap_or_else(nan);
                window_means(
                    &v.iter().map(|x| if x.is_finite() { *x } else { 0.0 }).collect::<Vec<_>>(),
                    k,
                )
            };
            Panel {
                label: looks[s].label.clone(),
                color: looks[s].color,
                t: ts.t.chunks(k).map(|w| w[w.len() - 1]).collect(),
                states: [state(0), state(1), state(2), state(3)],
                load: window_means(&column(ts, "arrivals_per_s").unwrap_or_else(nan), k),
                ttft: window_means(&column(ts, "ttft_p95_ms").unwrap_or_else(nan), k),
            }
        })
        .collect();
    let any =
        |f: fn(&Panel) -> &Vec<f64>| panels.iter().any(|p| f(p).iter().any(|x| x.is_finite()));
    let load = any(|p| &p.load);
    let ttft = any(|p| &p.ttft);
    let mut panels = panels;
    let slow = panels.iter().flat_map(|p| p.ttft.iter()).any(|v| *v > 10_000.0);
    if slow {
        for v in panels.iter_mut().flat_map(|p| p.ttft.iter_mut()) {
            *v /= 1e3;
        }
    }
    let at = sc.cell_title(cell);
    let mut subtitle = format!(
        "one run per {by} (replication {rep}{}); stacked from the bottom: ready, draining, loading, provisioning",
        if at.is_empty() { String::new() } else { format!(", {at}") }
    );
    if k > 1 {
        subtitle.push_str(&format!("; {} s averages", fmt_short(interval * k as f64)));
    }
    if total > shown.len() {
        subtitle.push_str(&format!("; first {} of {total}", shown.len()));
    }
    Some(Plot::Replicas(Replicas {
        head: Head {
            name: name.to_string(),
            title: format!("{}: replicas by state over time", sc.name),
            subtitle,
        },
        panels,
        load,
        ttft,
        step_s: interval * k as f64,
        ttft_desc: if slow { "TTFT (s)" } else { "TTFT (ms)" },
    }))
}

/// The step outline of `v` over `t`: each sample holds over the window that ends at it.
fn steps(t: &[f64], v: &[f64], dt: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(2 * t.len());
    for (i, (&b, &y)) in t.iter().zip(v).enumerate() {
        let a = if i == 0 { (b - dt).max(0.0) } else { t[i - 1] };
        out.push((a, y));
        out.push((b, y));
    }
    out
}

/// The top of a shared axis over `values` (at least `floor`).
fn top(values: impl Iterator<Item = f64>, floor: f64) -> f64 {
    values.filter(|v| v.is_finite()).fold(0.0, f64::max).max(floor)
}

/// A context strip without x labels, its y axis `y` described by `desc`.
fn strip<'a, DB: DrawingBackend>(
    pen: &Pen,
    part: &'a DrawingArea<DB, Shift>,
    x: &Axis,
    y: &Axis,
    desc: &str,
    label_w: u32,
) -> Result<ChartContext<'a, DB, Cartesian2d<Axis, Axis>>, String> {
    axes(
        pen,
        part,
        x,
        y,
        &AxesOpts {
            x_desc: "",
            y_desc: desc,
            x_names: None,
            x_labels: false,
            x_grid: true,
            y_label_w: label_w,
        },
    )
}

/// Draws the panels.
pub fn draw<DB: DrawingBackend>(
    p: &Replicas,
    pen: &Pen,
    root: &DrawingArea<DB, Shift>,
) -> Result<(), String> {
    let mut legend: Vec<LegendEntry> = STATES
        .iter()
        .rev()
        .map(|(s, c)| LegendEntry { label: s.to_string(), color: *c, swatch: Swatch::Box })
        .collect();
    if p.load {
        legend.push(LegendEntry {
            label: "offered load".into(),
            color: LOAD_FILL,
            swatch: Swatch::Box,
        });
    }
    if p.ttft {
        legend.push(LegendEntry { label: "p95 TTFT:".into(), color: INK, swatch: Swatch::Text });
        for panel in &p.panels {
            legend.push(LegendEntry {
                label: panel.label.clone(),
                color: panel.color,
                swatch: Swatch::Line,
            });
        }
    }
    let area = frame(pen, root, &p.head.title, &p.head.subtitle, &legend)?;
    let t_max = p.panels.iter().filter_map(|x| x.t.last().copied()).fold(0.0, f64::max);
    // The time axis ends with the run (not at the next round tick).
    let x = Axis::linear(0.0, t_max.max(1.0), 8, false);
    let totals = |q: &Panel| -> Vec<f64> {
        (0..q.t.len()).map(|i| q.states.iter().map(|s| s[i]).sum()).collect()
    };
    let replicas_y = Axis::linear(0.0, top(p.panels.iter().flat_map(totals), 1.0) * 1.08, 5, true);
    let load_y = Axis::linear(
        0.0,
        top(p.panels.iter().flat_map(|q| q.load.iter().copied()), 1.0) * 1.05,
        3,
        true,
    );
    let ttft_y = Axis::linear(
        0.0,
        top(p.panels.iter().flat_map(|q| q.ttft.iter().copied()), 1.0) * 1.05,
        3,
        true,
    );
    let mut used: Vec<&Axis> = vec![&replicas_y];
    if p.load {
        used.push(&load_y);
    }
    if p.ttft {
        used.push(&ttft_y);
    }
    let label_w =
        label_width(pen, &area, used.iter().flat_map(|a| a.ticks.iter().map(|t| a.label(*t))))?;
    let heading = pen.style(TEXT_PX, &INK).pos(Pos::new(HPos::Left, VPos::Center));
    let mut rest = area.clone();
    let n = p.panels.len();
    for (i, panel) in p.panels.iter().enumerate() {
        let is_last = i + 1 == n;
        let (head, body) = rest.split_vertically(HEADING_PX);
        head.draw(&Rectangle::new([(4, 10), (22, 28)], panel.color.filled())).map_err(err)?;
        pen.text(&head, &panel.label, &heading, (30, HEADING_PX / 2 + 2))?;
        rest = body;
        if p.load {
            let (part, below) = rest.split_vertically(STRIP_PX);
            rest = below;
            let chart = strip(pen, &part, &x, &load_y, "req/s", label_w)?;
            let line = steps(&panel.t, &panel.load, p.step_s);
            let finite: Vec<(f64, f64)> = line.into_iter().filter(|(_, v)| v.is_finite()).collect();
            if let (Some(first), Some(last)) = (finite.first(), finite.last()) {
                let mut poly = finite.clone();
                poly.push((last.0, 0.0));
                poly.push((first.0, 0.0));
                chart.plotting_area().draw(&Polygon::new(poly, LOAD_FILL.filled())).map_err(err)?;
                chart
                    .plotting_area()
                    .draw(&PathElement::new(finite, GREY.stroke_width(2)))
                    .map_err(err)?;
            }
        }
        if p.ttft {
            let (part, below) = rest.split_vertically(STRIP_PX);
            rest = below;
            let chart = strip(pen, &part, &x, &ttft_y, p.ttft_desc, label_w)?;
            // Windows without a first token break the line.
            let mut run: Vec<(f64, f64)> = Vec::new();
            let style = panel.color.stroke_width(3);
            for (&t, &v) in panel.t.iter().zip(&panel.ttft) {
                if v.is_finite() {
                    run.push((t, v));
                } else if !run.is_empty() {
                    chart
                        .plotting_area()
                        .draw(&PathElement::new(std::mem::take(&mut run), style))
                        .map_err(err)?;
                }
            }
            if run.len() == 1 {
                chart.plotting_area().draw(&Circle::new(run[0], 3, style.filled())).map_err(err)?;
            } else if !run.is_empty() {
                chart.plotting_area().draw(&PathElement::new(run, style)).map_err(err)?;
            }
        }
        let h = if is_last { rest.dim_in_pixel().1 as i32 } else { STATES_PX };
        let (part, below) = rest.split_vertically(h);
        rest = below;
        let chart = axes(
            pen,
            &part,
            &x,
            &replicas_y,
            &AxesOpts {
                x_desc: if is_last { "simulated time (s)" } else { "" },
                y_desc: "replicas",
                x_names: None,
                x_labels: true,
                x_grid: true,
                y_label_w: label_w,
            },
        )?;
        let pa = chart.plotting_area();
        let mut lo = vec![0.0; panel.t.len()];
        for (s, (_, c)) in STATES.iter().enumerate() {
            let v = &panel.states[s];
            if v.iter().all(|x| *x <= 0.0) {
                continue;
            }
            let hi: Vec<f64> = lo.iter().zip(v).map(|(a, b)| a + b).collect();
            let mut poly = steps(&panel.t, &hi, p.step_s);
            let mut under = steps(&panel.t, &lo, p.step_s);
            under.reverse();
            poly.extend(under);
            pa.draw(&Polygon::new(poly, c.filled())).map_err(err)?;
            lo = hi;
        }
        pa.draw(&PathElement::new(steps(&panel.t, &lo, p.step_s), INK.stroke_width(2)))
            .map_err(err)?;
    }
    Ok(())
}
