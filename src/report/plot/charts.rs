//! The plot kinds: what each one shows (prepared from [`ScenarioData`], or skipped when there
//! is nothing to show) and how it is drawn on any plotters backend.

use super::data::{ScenarioData, Val, TIMESERIES_COLUMNS};
use super::style::{
    color, err, frame, label_width, Axis, LegendEntry, Pen, Swatch, GREY, INK, SIZE, TEXT_PX,
    TICK_PX,
};
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;

/// A chart with two numeric axes (plotted coordinates; see [`Axis`]).
type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<Axis, Axis>>;

/// A plot ready to draw.
#[derive(Debug, Clone)]
pub enum Plot {
    /// Grouped bars with CI whiskers.
    Bars(Bars),
    /// Lines of a metric against the swept load.
    Load(Load),
    /// Latency CDFs.
    Cdf(Cdf),
    /// Time series of one run, one panel per quantity.
    Timeseries(Timeseries),
    /// Cost against latency with the Pareto front.
    Cost(Cost),
    /// Replica health states over time, one panel per policy.
    Health(super::health::Health),
    /// Replicas by lifecycle state over time, one panel per autoscaler (or policy).
    Replicas(super::replicas::Replicas),
}

/// One series of a plot: legend label, colour, and whether its lines are dashed (every other
/// palette slot, so lines that coincide stay visible and colour is not the only cue).
#[derive(Debug, Clone)]
pub struct Style {
    /// Legend text.
    pub label: String,
    /// Colour.
    pub color: RGBColor,
    /// Dashed lines.
    pub dashed: bool,
}

/// Common header of every plot.
#[derive(Debug, Clone)]
pub struct Head {
    /// File stem (`<scenario>-<kind>`).
    pub name: String,
    /// Title.
    pub title: String,
    /// Subtitle (what is aggregated, what the whiskers mean).
    pub subtitle: String,
}

/// p95 TTFT per policy per cell.
#[derive(Debug, Clone)]
pub struct Bars {
    head: Head,
    y_desc: String,
    x_desc: String,
    groups: Vec<String>,
    series: Vec<Style>,
    /// `[group][series]`.
    values: Vec<Vec<Option<Val>>>,
}

/// A metric against offered load.
#[derive(Debug, Clone)]
pub struct Load {
    head: Head,
    x_desc: String,
    y_desc: String,
    series: Curves,
    /// Draw `y = x` (throughput against offered rate).
    diagonal: bool,
    /// Vertical marker: x position and label.
    marker: Option<(f64, String)>,
}

/// TTFT CDF per policy.
#[derive(Debug, Clone)]
pub struct Cdf {
    head: Head,
    series: Vec<(Style, Vec<(f64, f64)>)>,
}

/// Cluster state over time for one run.
#[derive(Debug, Clone)]
pub struct Timeseries {
    head: Head,
    /// (column, axis description).
    panels: Vec<(String, String)>,
    /// Per series: times and the panel columns.
    series: Vec<(Style, Vec<f64>, Vec<Vec<f64>>)>,
    /// Fault windows shaded behind the lines: (start s, end s).
    shade: Vec<(f64, f64)>,
}

/// Cost (dollars, or GPU-hours when nothing is priced) against p95 TTFT.
#[derive(Debug, Clone)]
pub struct Cost {
    head: Head,
    /// x axis description with its unit.
    x_desc: &'static str,
    series: Vec<Style>,
    /// (series index, point label, cost, p95 TTFT).
    points: Vec<(usize, String, Val, Val)>,
    /// Indices into `points` on the Pareto front, by cost ascending.
    front: Vec<usize>,
}

/// Prepares a plot of a scenario under a file stem, or `None` when there is nothing to show.
pub type Builder = fn(&ScenarioData, &str) -> Option<Plot>;

/// The plot kinds, in output order: file suffix and builder.
pub const KINDS: &[(&str, Builder)] = &[
    ("ttft_p95", bars),
    ("latency_vs_load", latency_vs_load),
    ("throughput_vs_load", throughput_vs_load),
    ("ttft_cdf", ttft_cdf),
    ("timeseries", timeseries),
    ("cost_vs_ttft", cost_vs_ttft),
    ("health", super::health::build),
    ("replicas", super::replicas::build),
];

fn replications_note(sc: &ScenarioData) -> String {
    match sc.replications {
        0 | 1 => "1 replication (no confidence interval)".to_string(),
        n => format!("mean of {n} replications; whiskers: 95% confidence interval"),
    }
}

pub(super) fn styles(sc: &ScenarioData) -> Vec<Style> {
    sc.series
        .iter()
        .map(|s| Style { label: s.label.clone(), color: color(s.color), dashed: s.color % 2 == 1 })
        .collect()
}

fn bars(sc: &ScenarioData, name: &str) -> Option<Plot> {
    let values: Vec<Vec<Option<Val>>> = sc
        .cells
        .iter()
        .map(|c| (0..sc.series.len()).map(|s| sc.value(c.index, s, "ttft_ms_p95")).collect())
        .collect();
    if values.iter().flatten().all(Option::is_none) {
        return None;
    }
    let (groups, x_desc) = if sc.cells.len() == 1 {
        (vec![String::new()], "policy".to_string())
    } else {
        let desc = sc.load_axis().map_or_else(|| "sweep cell".to_string(), |a| a.label);
        (sc.cells.iter().map(|c| sc.cell_label(c)).collect(), desc)
    };
    Some(Plot::Bars(Bars {
        head: Head {
            name: name.to_string(),
            title: format!("{}: p95 time to first token by policy", sc.name),
            subtitle: replications_note(sc),
        },
        y_desc: "p95 TTFT (ms)".to_string(),
        x_desc,
        groups,
        series: styles(sc),
        values,
    }))
}

/// Share of requests lost (timed out or rejected) above which a latency percentile over the
/// completed requests flatters the policy: drawn as a hollow marker.
const LOSSY: f64 = 0.05;

/// The points of `metric` against the load axis per series: (x, value, lossy).
type Curves = Vec<(Style, Vec<(f64, Val, bool)>)>;

fn load_curves(sc: &ScenarioData, metric: &str) -> Option<(super::data::LoadAxis, Curves)> {
    let axis = sc.load_axis()?;
    let lost = |cell: u32, s: usize| {
        let rate = |m: &str| sc.value(cell, s, m).map_or(0.0, |v| v.mean);
        rate("timeout_rate") + rate("rejection_rate") > LOSSY
    };
    let series: Curves = styles(sc)
        .into_iter()
        .enumerate()
        .map(|(s, st)| {
            let mut pts: Vec<(f64, Val, bool)> = sc
                .cells
                .iter()
                .zip(&axis.x)
                .filter_map(|(c, &x)| {
                    sc.value(c.index, s, metric).map(|v| (x, v, lost(c.index, s)))
                })
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            (st, pts)
        })
        .filter(|(_, p)| !p.is_empty())
        .collect();
    (!series.is_empty()).then_some((axis, series))
}

/// The smallest swept rate at which some policy completes less than 95% of the offered rate:
/// the cluster is saturated from there on.
fn saturation(sc: &ScenarioData) -> Option<(f64, String)> {
    let (axis, series) = load_curves(sc, "throughput_rps")?;
    if !axis.is_rate {
        return None;
    }
    let points = || series.iter().flat_map(|(_, p)| p.iter());
    let capacity = points().map(|(_, v, _)| v.mean).fold(0.0, f64::max);
    let saturated = points().any(|(x, v, _)| *x > 0.0 && v.mean < 0.95 * x);
    saturated.then(|| (capacity, format!("max throughput {capacity:.0} req/s")))
}

fn latency_vs_load(sc: &ScenarioData, name: &str) -> Option<Plot> {
    let (axis, series) = load_curves(sc, "ttft_ms_p95")?;
    let mut subtitle = replications_note(sc);
    if series.iter().any(|(_, p)| p.iter().any(|(_, _, lossy)| *lossy)) {
        subtitle.push_str(&format!("; hollow: over {:.0}% timed out or rejected", LOSSY * 100.0));
    }
    Some(Plot::Load(Load {
        head: Head {
            name: name.to_string(),
            title: format!("{}: p95 TTFT vs offered load", sc.name),
            subtitle,
        },
        x_desc: axis.label,
        y_desc: "p95 TTFT (ms)".to_string(),
        series,
        diagonal: false,
        marker: saturation(sc),
    }))
}

fn throughput_vs_load(sc: &ScenarioData, name: &str) -> Option<Plot> {
    let (axis, mut series) = load_curves(sc, "throughput_rps")?;
    for p in series.iter_mut().flat_map(|(_, p)| p.iter_mut()) {
        p.2 = false;
    }
    Some(Plot::Load(Load {
        head: Head {
            name: name.to_string(),
            title: format!("{}: throughput vs offered load", sc.name),
            subtitle: replications_note(sc),
        },
        x_desc: axis.label,
        y_desc: "throughput (req/s)".to_string(),
        series,
        diagonal: axis.is_rate,
        marker: saturation(sc),
    }))
}

/// The cell whose CDF is drawn: among cells with quantiles, the one where p95 TTFT differs
/// most between policies (largest max/min ratio; the first such cell on ties).
fn cdf_cell(sc: &ScenarioData) -> Option<u32> {
    let mut best: Option<(f64, u32)> = None;
    for c in &sc.cells {
        if !(0..sc.series.len()).any(|s| sc.ttft_quantiles.contains_key(&(c.index, s))) {
            continue;
        }
        let p95: Vec<f64> = (0..sc.series.len())
            .filter_map(|s| sc.value(c.index, s, "ttft_ms_p95"))
            .map(|v| v.mean)
            .collect();
        let lo = p95.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = p95.iter().copied().fold(0.0, f64::max);
        let spread = if lo > 0.0 && lo.is_finite() { hi / lo } else { 1.0 };
        if best.is_none_or(|(b, _)| spread > b) {
            best = Some((spread, c.index));
        }
    }
    best.map(|(_, c)| c)
}

fn ttft_cdf(sc: &ScenarioData, name: &str) -> Option<Plot> {
    let cell = cdf_cell(sc)?;
    let mut reps = 0;
    let series: Vec<(Style, Vec<(f64, f64)>)> = styles(sc)
        .into_iter()
        .enumerate()
        .filter_map(|(s, st)| {
            let curve = sc.ttft_quantiles.get(&(cell, s))?;
            reps = reps.max(curve.replications);
            Some((st, curve.points.clone()))
        })
        .filter(|(_, p)| p.iter().any(|(_, v)| *v > 0.0))
        .collect();
    if series.is_empty() {
        return None;
    }
    let pooled = match reps {
        1 => "1 replication".to_string(),
        n => format!("quantiles averaged over {n} replications"),
    };
    let at = sc.cell_title(cell);
    let subtitle =
        if at.is_empty() { pooled } else { format!("{at} (where policies differ most); {pooled}") };
    Some(Plot::Cdf(Cdf {
        head: Head {
            name: name.to_string(),
            title: format!("{}: distribution of time to first token", sc.name),
            subtitle,
        },
        series,
    }))
}

/// Most points drawn per line; longer series are averaged over windows of `k` samples.
pub(super) const MAX_POINTS: usize = 300;

/// Averages consecutive windows of `k` samples (a trailing partial window included).
pub(super) fn downsample(t: &[f64], ys: &[Vec<f64>], k: usize) -> (Vec<f64>, Vec<Vec<f64>>) {
    if k <= 1 {
        return (t.to_vec(), ys.to_vec());
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let ranges: Vec<(usize, usize)> =
        (0..t.len()).step_by(k).map(|a| (a, (a + k).min(t.len()))).collect();
    (
        ranges.iter().map(|&(a, b)| mean(&t[a..b])).collect(),
        ys.iter().map(|y| ranges.iter().map(|&(a, b)| mean(&y[a..b])).collect()).collect(),
    )
}

fn timeseries(sc: &ScenarioData, name: &str) -> Option<Plot> {
    let (cell, rep) = sc.timeseries_run?;
    let any = |c: &str, nonzero: bool| {
        sc.timeseries.values().any(|ts| {
            ts.columns
                .get(c)
                .is_some_and(|v| v.iter().any(|x| x.is_finite() && (!nonzero || *x != 0.0)))
        })
    };
    // Failure and admission columns only when something happened; admitted beside rejected.
    let present: Vec<&str> = TIMESERIES_COLUMNS
        .iter()
        .copied()
        .filter(|&c| match c {
            "admitted_per_s" => any("rejected_per_s", true),
            "rejected_per_s" | "errors_per_s" | "gateway_queued" | "ejected" | "down" => {
                any(c, true)
            }
            _ => any(c, false),
        })
        .collect();
    if present.is_empty() {
        return None;
    }
    let desc = |c: &str| -> String {
        match c {
            "queued" => "queued (requests)",
            "in_flight" => "in flight (requests)",
            "completions_per_s" => "completions (req/s)",
            "kv_util" => "KV in use",
            "replicas" => "replicas",
            "admitted_per_s" => "admitted (req/s)",
            "rejected_per_s" => "rejected (req/s)",
            "errors_per_s" => "errors + failed (req/s)",
            "gateway_queued" => "gateway queue (requests)",
            "ejected" => "replicas ejected",
            "down" => "replicas down",
            other => other,
        }
        .to_string()
    };
    let panels: Vec<(String, String)> = present.iter().map(|c| (c.to_string(), desc(c))).collect();
    let all = styles(sc);
    let longest = sc.timeseries.values().map(|ts| ts.t.len()).max().unwrap_or(0);
    let k = longest.div_ceil(MAX_POINTS).max(1);
    let step = sc.timeseries.values().find(|ts| ts.t.len() > 1).map_or(0.0, |ts| ts.t[1] - ts.t[0]);
    let series: Vec<(Style, Vec<f64>, Vec<Vec<f64>>)> = sc
        .timeseries
        .iter()
        .map(|(&s, ts)| {
            let ys: Vec<Vec<f64>> = present
                .iter()
                .map(|c| ts.columns.get(*c).cloned().unwrap_or_else(|| vec![f64::NAN; ts.t.len()]))
                .collect();
            let (t, ys) = downsample(&ts.t, &ys, k);
            (Style { dashed: false, ..all[s].clone() }, t, ys)
        })
        .collect();
    let at = sc.cell_title(cell);
    let run = format!(
        "replication {rep}{}",
        if at.is_empty() { String::new() } else { format!(", {at}") }
    );
    let mut subtitle = if k > 1 {
        format!(
            "one run per policy ({run}; same requests for all); {} s averages",
            fmt_short(step * k as f64)
        )
    } else {
        format!("one run per policy ({run}; same requests for all)")
    };
    if !sc.faults.is_empty() {
        let shown: Vec<String> = sc
            .faults
            .iter()
            .take(3)
            .map(|(a, b, l)| format!("{l} {}–{} s", fmt_short(*a), fmt_short(*b)))
            .collect();
        let more = sc.faults.len().saturating_sub(3);
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        subtitle.push_str(&format!("; shaded: faults ({}{more})", shown.join(", ")));
    }
    Some(Plot::Timeseries(Timeseries {
        head: Head {
            name: name.to_string(),
            title: format!("{}: cluster state over time", sc.name),
            subtitle,
        },
        panels,
        series,
        shade: sc.faults.iter().map(|(a, b, _)| (*a, *b)).collect(),
    }))
}

fn cost_vs_ttft(sc: &ScenarioData, name: &str) -> Option<Plot> {
    // Dollars when the pools are priced, GPU-hours otherwise.
    let priced = sc.cells.iter().any(|c| {
        (0..sc.series.len()).any(|s| sc.value(c.index, s, "cost_usd").is_some_and(|v| v.mean > 0.0))
    });
    let (metric, x_desc) =
        if priced { ("cost_usd", "cost ($)") } else { ("gpu_hours", "cost (GPU-hours)") };
    let mut points = Vec::new();
    for c in &sc.cells {
        for (s, st) in sc.series.iter().enumerate() {
            if let (Some(g), Some(t)) =
                (sc.value(c.index, s, metric), sc.value(c.index, s, "ttft_ms_p95"))
            {
                let label = if sc.cells.len() > 1 {
                    format!("{} @ {}", st.label, sc.cell_label_unit(c))
                } else {
                    st.label.clone()
                };
                points.push((s, label, g, t));
            }
        }
    }
    if points.is_empty() {
        return None;
    }
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by(|&a, &b| {
        points[a]
            .2
            .mean
            .total_cmp(&points[b].2.mean)
            .then(points[a].3.mean.total_cmp(&points[b].3.mean))
    });
    let mut front = Vec::new();
    let mut best = f64::INFINITY;
    for i in order {
        if points[i].3.mean < best {
            best = points[i].3.mean;
            front.push(i);
        }
    }
    Some(Plot::Cost(Cost {
        head: Head {
            name: name.to_string(),
            title: format!("{}: cost vs p95 TTFT", sc.name),
            subtitle: format!("{}; lower left is better", replications_note(sc)),
        },
        x_desc,
        series: styles(sc),
        points,
        front,
    }))
}

impl Plot {
    /// File stem.
    pub fn name(&self) -> &str {
        &self.head().name
    }

    fn head(&self) -> &Head {
        match self {
            Plot::Bars(p) => &p.head,
            Plot::Load(p) => &p.head,
            Plot::Cdf(p) => &p.head,
            Plot::Timeseries(p) => &p.head,
            Plot::Cost(p) => &p.head,
            Plot::Health(p) => &p.head,
            Plot::Replicas(p) => &p.head,
        }
    }

    /// Canvas size in pixels.
    pub fn size(&self) -> (u32, u32) {
        match self {
            Plot::Timeseries(p) => (SIZE.0, 170 + 230 * p.panels.len() as u32),
            Plot::Health(p) => (SIZE.0, p.height()),
            Plot::Replicas(p) => (SIZE.0, p.height()),
            _ => SIZE,
        }
    }

    /// Draws the plot on `root` with `pen` (see [`Pen`]) and presents it.
    pub fn draw<DB: DrawingBackend>(
        &self,
        pen: &Pen,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), String> {
        match self {
            Plot::Bars(p) => draw_bars(p, pen, root),
            Plot::Load(p) => draw_load(p, pen, root),
            Plot::Cdf(p) => draw_cdf(p, pen, root),
            Plot::Timeseries(p) => draw_timeseries(p, pen, root),
            Plot::Cost(p) => draw_cost(p, pen, root),
            Plot::Health(p) => super::health::draw(p, pen, root),
            Plot::Replicas(p) => super::replicas::draw(p, pen, root),
        }?;
        root.present().map_err(err)
    }
}

fn legend(series: &[Style], swatch: Swatch) -> Vec<LegendEntry> {
    series
        .iter()
        .map(|s| LegendEntry {
            label: s.label.clone(),
            color: s.color,
            swatch: match (swatch, s.dashed) {
                (Swatch::Line, true) => Swatch::Dashed,
                (Swatch::LineDot, true) => Swatch::DashedDot,
                (w, _) => w,
            },
        })
        .collect()
}

/// A polyline in the series' colour, dashed when the series is.
fn polyline<DB: DrawingBackend>(
    chart: &Chart<'_, DB>,
    points: Vec<(f64, f64)>,
    st: &Style,
    width: u32,
) -> Result<(), String> {
    let pa = chart.plotting_area();
    let style = st.color.stroke_width(width);
    if st.dashed {
        pa.draw(&DashedPathElement::new(points, 14, 7, style)).map_err(err)
    } else {
        pa.draw(&PathElement::new(points, style)).map_err(err)
    }
}

/// Options of [`axes`].
pub(super) struct AxesOpts<'s> {
    pub(super) x_desc: &'s str,
    pub(super) y_desc: &'s str,
    /// Tick label of an x coordinate (default: the axis' own).
    pub(super) x_names: Option<&'s dyn Fn(f64) -> String>,
    /// Draw x tick labels.
    pub(super) x_labels: bool,
    /// Vertical grid lines.
    pub(super) x_grid: bool,
    /// Width reserved for y tick labels (0: measure).
    pub(super) y_label_w: u32,
}

/// Gap between an axis and its tick labels (px).
const LABEL_GAP: i32 = 10;

/// Builds a chart on `area` with grid, axes, tick labels and axis descriptions. Labels are
/// drawn by [`Pen`] rather than by plotters' mesh, so they are never clipped at the ends of
/// an axis and sit at the same place in SVG and PNG.
pub(super) fn axes<'a, DB: DrawingBackend>(
    pen: &Pen,
    area: &'a DrawingArea<DB, Shift>,
    x: &Axis,
    y: &Axis,
    o: &AxesOpts<'_>,
) -> Result<Chart<'a, DB>, String> {
    let tick = pen.style(TICK_PX, &INK);
    let desc = pen.style(TEXT_PX, &INK);
    let y_labels: Vec<String> = y.ticks.iter().map(|t| y.label(*t)).collect();
    let label_w =
        if o.y_label_w > 0 { o.y_label_w } else { label_width(pen, area, y_labels.clone())? };
    let desc_h = pen.measure(area, "Hg", &desc)?.1 as i32;
    let tick_h = pen.measure(area, "0", &tick)?.1 as i32;
    let mut x_area = 8;
    if o.x_labels {
        x_area += LABEL_GAP + tick_h;
    }
    if !o.x_desc.is_empty() {
        x_area += 14 + desc_h;
    }
    let y_area = label_w as i32 + LABEL_GAP + 14 + desc_h;
    let mut chart = ChartBuilder::on(area)
        .margin_top(14)
        .margin_right(30)
        .x_label_area_size(x_area)
        .y_label_area_size(y_area)
        .build_cartesian_2d(x.clone(), y.clone())
        .map_err(err)?;
    let blank = |_: &f64| String::new();
    let mut mesh = chart.configure_mesh();
    mesh.x_label_formatter(&blank)
        .y_label_formatter(&blank)
        .bold_line_style(RGBColor(0xDD, 0xDD, 0xDD).stroke_width(1))
        .light_line_style(RGBColor(0xF2, 0xF2, 0xF2).stroke_width(1))
        .axis_style(INK.stroke_width(2))
        .set_all_tick_mark_size(6);
    if !o.x_grid {
        mesh.disable_x_mesh();
    }
    mesh.draw().map_err(err)?;

    let (bx, by) = area.get_base_pixel();
    let (xr, yr) = chart.plotting_area().get_pixel_range();
    for (t, l) in y.ticks.iter().zip(&y_labels) {
        let (px, py) = chart.backend_coord(&(x.lo, *t));
        let style = tick.pos(Pos::new(HPos::Right, VPos::Center));
        pen.text(area, l, &style, (px - bx - LABEL_GAP, py - by))?;
    }
    if o.x_labels {
        // Labels that would touch the previous one are left out (many sweep cells).
        let mut free_from = i32::MIN;
        for t in &x.ticks {
            let l = match o.x_names {
                Some(f) => f(*t),
                None => x.label(*t),
            };
            let (px, py) = chart.backend_coord(&(*t, y.lo));
            let w = pen.measure(area, &l, &tick)?.0 as i32;
            if px - w / 2 < free_from {
                continue;
            }
            free_from = px + w / 2 + 12;
            let style = tick.pos(Pos::new(HPos::Center, VPos::Top));
            pen.text(area, &l, &style, (px - bx, py - by + LABEL_GAP))?;
        }
    }
    if !o.x_desc.is_empty() {
        let style = desc.pos(Pos::new(HPos::Center, VPos::Bottom));
        let h = area.dim_in_pixel().1 as i32;
        pen.text(area, o.x_desc, &style, ((xr.start + xr.end) / 2 - bx, h - 8))?;
    }
    if !o.y_desc.is_empty() {
        let style = desc.transform(FontTransform::Rotate270).pos(Pos::new(HPos::Center, VPos::Top));
        pen.text(area, o.y_desc, &style, (2, (yr.start + yr.end) / 2 - by))?;
    }
    Ok(chart)
}

/// A number with at most 3 decimals and no trailing zeros.
pub(super) fn fmt_short(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn fmt_value(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The top of a value axis: the highest whisker, but at most 1.6 times the highest mean, so a
/// few very wide intervals (two replications) do not flatten everything; longer whiskers run
/// off the top.
fn axis_top<'v>(values: impl Iterator<Item = &'v Val>) -> f64 {
    let (mut mean, mut whisker) = (0.0f64, 0.0f64);
    for v in values {
        mean = mean.max(v.mean);
        whisker = whisker.max(v.mean + v.ci.unwrap_or(0.0));
    }
    if mean > 0.0 {
        whisker.min(1.6 * mean)
    } else {
        whisker
    }
}

/// Draws a whisker from `lo` to `hi` at `x` with caps `cap` wide (data units).
fn whisker<DB: DrawingBackend>(
    chart: &Chart<'_, DB>,
    x: f64,
    (lo, hi): (f64, f64),
    cap: f64,
    style: ShapeStyle,
) -> Result<(), String> {
    let pa = chart.plotting_area();
    pa.draw(&PathElement::new(vec![(x, lo), (x, hi)], style)).map_err(err)?;
    pa.draw(&PathElement::new(vec![(x - cap, hi), (x + cap, hi)], style)).map_err(err)?;
    pa.draw(&PathElement::new(vec![(x - cap, lo), (x + cap, lo)], style)).map_err(err)
}

fn draw_bars<DB: DrawingBackend>(
    p: &Bars,
    pen: &Pen,
    root: &DrawingArea<DB, Shift>,
) -> Result<(), String> {
    let area = frame(pen, root, &p.head.title, &p.head.subtitle, &legend(&p.series, Swatch::Box))?;
    let top = axis_top(p.values.iter().flatten().flatten());
    let n_groups = p.groups.len();
    let n_series = p.series.len().max(1);
    let n_bars = p.values.iter().flatten().filter(|v| v.is_some()).count();
    let value_labels = n_bars <= 12;
    let y = Axis::linear(0.0, top * if value_labels { 1.1 } else { 1.02 }, 6, true);
    let mut x = Axis::linear(0.0, n_groups as f64, 1, false);
    x.lo = 0.0;
    x.hi = n_groups as f64;
    x.ticks =
        if n_groups > 1 { (0..n_groups).map(|g| g as f64 + 0.5).collect() } else { Vec::new() };
    let names = |c: f64| p.groups.get(c.floor().max(0.0) as usize).cloned().unwrap_or_default();
    let chart = axes(
        pen,
        &area,
        &x,
        &y,
        &AxesOpts {
            x_desc: &p.x_desc,
            y_desc: &p.y_desc,
            x_names: Some(&names),
            x_labels: n_groups > 1,
            x_grid: false,
            y_label_w: 0,
        },
    )?;
    let group_w = 0.8;
    let bar_w = group_w / n_series as f64;
    let pa = chart.plotting_area();
    let label = pen.style(TICK_PX, &INK).pos(Pos::new(HPos::Center, VPos::Bottom));
    for (g, row) in p.values.iter().enumerate() {
        for (s, v) in row.iter().enumerate() {
            let Some(v) = v else { continue };
            let x0 = g as f64 + 0.1 + s as f64 * bar_w;
            let (xa, xb) = (x0 + bar_w * 0.08, x0 + bar_w * 0.92);
            pa.draw(&Rectangle::new([(xa, 0.0), (xb, v.mean)], p.series[s].color.filled()))
                .map_err(err)?;
            let xm = (xa + xb) / 2.0;
            let mut label_y = v.mean;
            if let Some(ci) = v.ci.filter(|c| *c > 0.0) {
                let (lo, hi) = ((v.mean - ci).max(0.0), (v.mean + ci).min(y.hi));
                let thin =
                    chart.backend_coord(&(xb, 0.0)).0 - chart.backend_coord(&(xa, 0.0)).0 < 10;
                let ink = INK.stroke_width(if thin { 1 } else { 2 });
                whisker(&chart, xm, (lo, hi), (xb - xa) * 0.22, ink)?;
                label_y = hi;
            }
            if value_labels {
                let (px, py) = chart.backend_coord(&(xm, label_y));
                pen.text(root, &fmt_value(v.mean), &label, (px, py - 6))?;
            }
        }
    }
    Ok(())
}

fn draw_load<DB: DrawingBackend>(
    p: &Load,
    pen: &Pen,
    root: &DrawingArea<DB, Shift>,
) -> Result<(), String> {
    let mut entries =
        legend(&p.series.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>(), Swatch::LineDot);
    if p.diagonal {
        entries.push(LegendEntry {
            label: "offered load".into(),
            color: GREY,
            swatch: Swatch::Dashed,
        });
    }
    let area = frame(pen, root, &p.head.title, &p.head.subtitle, &entries)?;
    let pts = || p.series.iter().flat_map(|(_, v)| v.iter());
    let x_min = pts().map(|(x, _, _)| *x).fold(f64::INFINITY, f64::min);
    let x_max = pts().map(|(x, _, _)| *x).fold(0.0, f64::max);
    let y_min = pts().map(|(_, v, _)| v.mean - v.ci.unwrap_or(0.0)).fold(f64::INFINITY, f64::min);
    let y_max = axis_top(pts().map(|(_, v, _)| v));
    // The x axis starts at 0 unless the swept range is far from it; latency axes always start
    // at 0, the throughput axis where the x axis does (so `y = x` is the diagonal).
    let x_lo = if x_min <= 0.35 * x_max { 0.0 } else { x_min - 0.05 * (x_max - x_min) };
    let x = Axis::linear(x_lo, x_max + 0.02 * (x_max - x_lo), 8, true);
    let y = if p.diagonal {
        let lo = x.lo.min(y_min - 0.02 * (y_max - y_min)).max(0.0);
        Axis::linear(lo, y_max.max(x_max) + 0.03 * (y_max - lo), 6, true)
    } else {
        Axis::linear(0.0, y_max * 1.03, 6, true)
    };
    let chart = axes(
        pen,
        &area,
        &x,
        &y,
        &AxesOpts {
            x_desc: &p.x_desc,
            y_desc: &p.y_desc,
            x_names: None,
            x_labels: true,
            x_grid: true,
            y_label_w: 0,
        },
    )?;
    let pa = chart.plotting_area();
    let note = pen.style(TICK_PX, &INK);
    if p.diagonal {
        let (a, b) = (x.lo.max(y.lo), x.hi.min(y.hi));
        let line = DashedPathElement::new(vec![(a, a), (b, b)], 10, 8, GREY.stroke_width(2));
        pa.draw(&line).map_err(err)?;
    }
    if let Some((mx, label)) = &p.marker {
        if p.diagonal {
            let line =
                DashedPathElement::new(vec![(x.lo, *mx), (x.hi, *mx)], 6, 6, INK.stroke_width(1));
            pa.draw(&line).map_err(err)?;
            let (px, py) = chart.backend_coord(&(x.lo, *mx));
            pen.text(
                root,
                label,
                &note.pos(Pos::new(HPos::Left, VPos::Bottom)),
                (px + 10, py - 6),
            )?;
        } else {
            let line =
                DashedPathElement::new(vec![(*mx, y.lo), (*mx, y.hi)], 6, 6, INK.stroke_width(1));
            pa.draw(&line).map_err(err)?;
            let (px, py) = chart.backend_coord(&(*mx, y.hi));
            pen.text(root, label, &note.pos(Pos::new(HPos::Right, VPos::Top)), (px - 8, py + 8))?;
        }
    }
    // Visible whiskers: series are dodged sideways a little so they do not hide each other.
    let span = x.hi - x.lo;
    let n = p.series.len() as f64;
    let cap_w = span * 0.004;
    let wide = pts().any(|(_, v, _)| v.ci.unwrap_or(0.0) > 0.01 * (y.hi - y.lo));
    let dodge = if wide { span * 0.0045 } else { 0.0 };
    for (i, (st, points)) in p.series.iter().enumerate() {
        let dx = (i as f64 - (n - 1.0) / 2.0) * dodge;
        for (px, v, _) in points {
            if let Some(ci) = v.ci.filter(|c| *c > 0.0) {
                let range = ((v.mean - ci).max(y.lo), (v.mean + ci).min(y.hi));
                whisker(&chart, px + dx, range, cap_w, st.color.stroke_width(2))?;
            }
        }
        polyline(&chart, points.iter().map(|(x, v, _)| (x + dx, v.mean)).collect(), st, 3)?;
        for (px, v, lossy) in points {
            if *lossy {
                pa.draw(&Circle::new((px + dx, v.mean), 6, WHITE.filled())).map_err(err)?;
                pa.draw(&Circle::new((px + dx, v.mean), 6, st.color.stroke_width(3)))
                    .map_err(err)?;
            } else {
                pa.draw(&Circle::new((px + dx, v.mean), 6, st.color.filled())).map_err(err)?;
            }
        }
    }
    Ok(())
}

fn draw_cdf<DB: DrawingBackend>(
    p: &Cdf,
    pen: &Pen,
    root: &DrawingArea<DB, Shift>,
) -> Result<(), String> {
    let styles: Vec<Style> = p.series.iter().map(|(s, _)| s.clone()).collect();
    let area = frame(pen, root, &p.head.title, &p.head.subtitle, &legend(&styles, Swatch::Line))?;
    let vals =
        || p.series.iter().flat_map(|(_, pts)| pts.iter().map(|(_, v)| *v)).filter(|v| *v > 0.0);
    let lo = vals().fold(f64::INFINITY, f64::min);
    let hi = vals().fold(0.0, f64::max);
    let x = Axis::log(lo, hi);
    let mut y = Axis::linear(0.0, 1.0, 5, false);
    y.minor = (0..=20).map(|i| f64::from(i) * 0.05).collect();
    let chart = axes(
        pen,
        &area,
        &x,
        &y,
        &AxesOpts {
            x_desc: "TTFT (ms, log scale)",
            y_desc: "fraction of requests ≤ TTFT",
            x_names: None,
            x_labels: true,
            x_grid: true,
            y_label_w: 0,
        },
    )?;
    let pa = chart.plotting_area();
    let note = pen.style(TICK_PX - 2.0, &GREY);
    for (q, label) in [(0.5, "p50"), (0.95, "p95"), (0.99, "p99")] {
        pa.draw(&DashedPathElement::new(vec![(x.lo, q), (x.hi, q)], 6, 6, GREY.stroke_width(1)))
            .map_err(err)?;
        let (px, py) = chart.backend_coord(&(x.lo, q));
        let (va, dy) = if q > 0.96 { (VPos::Bottom, -3) } else { (VPos::Top, 3) };
        pen.text(root, label, &note.pos(Pos::new(HPos::Left, va)), (px + 8, py + dy))?;
    }
    for (st, pts) in &p.series {
        let line: Vec<(f64, f64)> =
            pts.iter().filter(|(_, v)| *v > 0.0).map(|(q, v)| (x.map(*v), *q)).collect();
        polyline(&chart, line, st, 3)?;
    }
    Ok(())
}

fn draw_timeseries<DB: DrawingBackend>(
    p: &Timeseries,
    pen: &Pen,
    root: &DrawingArea<DB, Shift>,
) -> Result<(), String> {
    let styles: Vec<Style> = p.series.iter().map(|(s, _, _)| s.clone()).collect();
    let area = frame(pen, root, &p.head.title, &p.head.subtitle, &legend(&styles, Swatch::Line))?;
    let t_max = p.series.iter().flat_map(|(_, t, _)| t.iter().copied()).fold(0.0, f64::max);
    let x = Axis::linear(0.0, t_max, 8, true);
    let y_axes: Vec<Axis> = (0..p.panels.len())
        .map(|i| {
            let m = p
                .series
                .iter()
                .flat_map(|(_, _, ys)| ys[i].iter().copied())
                .filter(|v| v.is_finite())
                .fold(0.0, f64::max);
            Axis::linear(0.0, (m * 1.02).max(1.0), 4, true)
        })
        .collect();
    let label_w =
        label_width(pen, &area, y_axes.iter().flat_map(|a| a.ticks.iter().map(|t| a.label(*t))))?;
    let n = p.panels.len() as i32;
    // Equal plot heights: the last panel also holds the x labels and description.
    let h = area.dim_in_pixel().1 as i32;
    let extra = 80;
    let each = (h - extra) / n;
    let mut parts = Vec::new();
    let mut rest = area.clone();
    for _ in 1..n {
        let (top, bottom) = rest.split_vertically(each);
        parts.push(top);
        rest = bottom;
    }
    parts.push(rest);
    for (i, ((_, desc), part)) in p.panels.iter().zip(&parts).enumerate() {
        let is_last = i + 1 == parts.len();
        let mut chart = axes(
            pen,
            part,
            &x,
            &y_axes[i],
            &AxesOpts {
                x_desc: if is_last { "simulated time (s)" } else { "" },
                y_desc: desc,
                x_names: None,
                x_labels: is_last,
                x_grid: true,
                y_label_w: label_w,
            },
        )?;
        let top = y_axes[i].hi;
        for &(a, b) in &p.shade {
            let (a, b) = (a.min(t_max), b.min(t_max));
            if b > a {
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(a, 0.0), (b, top)],
                        RGBColor(214, 39, 40).mix(0.10).filled(),
                    )))
                    .map_err(err)?;
            }
        }
        for (st, t, ys) in &p.series {
            let line: Vec<(f64, f64)> = t
                .iter()
                .zip(&ys[i])
                .filter(|(_, v)| v.is_finite())
                .map(|(t, v)| (*t, *v))
                .collect();
            polyline(&chart, line, st, 2)?;
        }
    }
    Ok(())
}

fn draw_cost<DB: DrawingBackend>(
    p: &Cost,
    pen: &Pen,
    root: &DrawingArea<DB, Shift>,
) -> Result<(), String> {
    let mut entries = legend(&p.series, Swatch::Dot);
    entries.push(LegendEntry { label: "Pareto front:".into(), color: INK, swatch: Swatch::Dashed });
    const LISTED: usize = 9;
    for (k, &i) in p.front.iter().enumerate().take(LISTED) {
        let label = format!("{} {}", k + 1, p.points[i].1);
        entries.push(LegendEntry { label, color: INK, swatch: Swatch::Text });
    }
    if p.front.len() > LISTED {
        let label = format!("… ({} more)", p.front.len() - LISTED);
        entries.push(LegendEntry { label, color: INK, swatch: Swatch::Text });
    }
    let area = frame(pen, root, &p.head.title, &p.head.subtitle, &entries)?;
    let x_max =
        p.points.iter().map(|(_, _, g, _)| g.mean + g.ci.unwrap_or(0.0)).fold(0.0, f64::max);
    let y_max =
        p.points.iter().map(|(_, _, _, t)| t.mean + t.ci.unwrap_or(0.0)).fold(0.0, f64::max);
    let x = Axis::linear(0.0, x_max * 1.08, 8, true);
    let y = Axis::linear(0.0, y_max * 1.08, 6, true);
    let chart = axes(
        pen,
        &area,
        &x,
        &y,
        &AxesOpts {
            x_desc: p.x_desc,
            y_desc: "p95 TTFT (ms)",
            x_names: None,
            x_labels: true,
            x_grid: true,
            y_label_w: 0,
        },
    )?;
    let pa = chart.plotting_area();
    let front: Vec<(f64, f64)> =
        p.front.iter().map(|&i| (p.points[i].2.mean, p.points[i].3.mean)).collect();
    let mut stairs = Vec::new();
    if let Some(&(gx, _)) = front.first() {
        stairs.push((gx, y.hi));
    }
    for (k, &(gx, ty)) in front.iter().enumerate() {
        if k > 0 {
            stairs.push((gx, front[k - 1].1));
        }
        stairs.push((gx, ty));
    }
    if let Some(&(_, ty)) = front.last() {
        stairs.push((x.hi, ty));
    }
    pa.draw(&DashedPathElement::new(stairs, 10, 6, INK.stroke_width(2))).map_err(err)?;
    for (s, _, g, t) in &p.points {
        let c = p.series[*s].color;
        let ink = c.stroke_width(2);
        if let Some(ci) = g.ci.filter(|c| *c > 0.0) {
            let line = vec![((g.mean - ci).max(0.0), t.mean), (g.mean + ci, t.mean)];
            pa.draw(&PathElement::new(line, ink)).map_err(err)?;
        }
        if let Some(ci) = t.ci.filter(|c| *c > 0.0) {
            let line = vec![(g.mean, (t.mean - ci).max(0.0)), (g.mean, t.mean + ci)];
            pa.draw(&PathElement::new(line, ink)).map_err(err)?;
        }
        pa.draw(&Circle::new((g.mean, t.mean), 8, c.filled())).map_err(err)?;
    }
    // Front points are ringed and numbered; the legend lists what each number is, so no
    // label covers data. Numbers that would overlap are pushed down, with a leader line.
    let note = pen.style(TICK_PX, &INK).pos(Pos::new(HPos::Left, VPos::Center));
    let line_h = pen.measure(root, "0", &note)?.1 as i32 + 2;
    let mut placed: Vec<(i32, i32, usize)> = p
        .front
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            let (_, _, g, t) = &p.points[i];
            let (px, py) = chart.backend_coord(&(g.mean, t.mean));
            (px, py, k + 1)
        })
        .collect();
    for &i in &p.front {
        let (_, _, g, t) = &p.points[i];
        pa.draw(&Circle::new((g.mean, t.mean), 12, INK.stroke_width(2))).map_err(err)?;
    }
    placed.sort_by_key(|&(px, py, _)| (py, px));
    let mut next_free = i32::MIN;
    for (px, py, k) in placed {
        let ly = (py - 14).max(next_free);
        next_free = ly + line_h;
        let lx = px + 14;
        if ly - (py - 14) > line_h / 2 {
            root.draw(&PathElement::new(vec![(px + 9, py + 9), (lx, ly)], GREY.stroke_width(1)))
                .map_err(err)?;
        }
        pen.text(root, &k.to_string(), &note, (lx, ly))?;
    }
    Ok(())
}
