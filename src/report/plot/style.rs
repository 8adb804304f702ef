//! Shared look of the plots: the bundled font, the palette, sizes, axis ticks, the title and
//! legend frame, and a bitmap backend wrapper that puts text where the anchor says.

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::sync::OnceLock;

/// DejaVu Sans (Bitstream Vera license, see `assets/fonts/DejaVuSans-LICENSE.txt`), so PNG text
/// needs no system font library or installed font.
static FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");

/// The font family every text uses (SVG viewers substitute their own sans-serif).
pub const FAMILY: &str = "sans-serif";

/// Registers the bundled font with plotters (once per process).
pub fn register_font() -> Result<(), String> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE
        .get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err("the bundled font could not be loaded".to_string())
    }
}

/// Title size (px).
pub const TITLE_PX: f64 = 30.0;
/// Subtitle, axis description and legend size (px).
pub const TEXT_PX: f64 = 22.0;
/// Tick label size (px).
pub const TICK_PX: f64 = 20.0;
/// Default canvas (px): 16:9-ish, readable on a slide.
pub const SIZE: (u32, u32) = (1200, 700);

/// Tableau 10 (distinguishable, print-safe), then ten more from Tableau 20 chosen to stay apart
/// from the first ten; series colour = palette[first appearance % 20].
const PALETTE: [(u8, u8, u8); 20] = [
    (0x4E, 0x79, 0xA7),
    (0xF2, 0x8E, 0x2B),
    (0xE1, 0x57, 0x59),
    (0x76, 0xB7, 0xB2),
    (0x59, 0xA1, 0x4F),
    (0xB0, 0x7A, 0xA1),
    (0x9C, 0x75, 0x5F),
    (0xED, 0xC9, 0x48),
    (0xFF, 0x9D, 0xA7),
    (0xBA, 0xB0, 0xAC),
    (0xA0, 0xCB, 0xE8),
    (0xFF, 0xBE, 0x7D),
    (0xD3, 0x72, 0x95),
    (0x49, 0x98, 0x94),
    (0x8C, 0xD1, 0x7D),
    (0xD4, 0xA6, 0xC8),
    (0xD7, 0xB5, 0xA6),
    (0xB6, 0x99, 0x2D),
    (0x79, 0x70, 0x6E),
    (0x1F, 0x3B, 0x5A),
];

/// The colour of palette slot `i`.
pub fn color(i: usize) -> RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

/// Dark grey for text and whiskers.
pub const INK: RGBColor = RGBColor(0x33, 0x33, 0x33);
/// Mid grey for reference lines and secondary text.
pub const GREY: RGBColor = RGBColor(0x80, 0x80, 0x80);

/// Text drawing that looks the same on every backend, with the nominal size as the em.
///
/// plotters' SVG backend writes `font-size` as the size divided by 1.24, so the SVG pen
/// scales by 1.24. Its pure-Rust (`ab_glyph`) bitmap text takes the size as the font's
/// ascent-to-descent height (1.16 em for DejaVu Sans), so the bitmap pen scales by 1.16; and
/// it puts the baseline half a size below the top of the layout box, so glyphs sit about 0.2
/// size too high: the bitmap pen also shifts text down, in the text's own orientation.
/// `tests::bitmap_text_sits_on_its_anchor` checks the result.
#[derive(Debug, Clone, Copy)]
pub struct Pen {
    scale: f64,
    shift: f64,
}

impl Pen {
    /// For SVG output.
    pub const SVG: Pen = Pen { scale: 1.24, shift: 0.0 };
    /// For bitmap (PNG) output.
    pub const BITMAP: Pen = Pen { scale: 1.16, shift: 0.2 };

    /// A text style of nominal size `px` in `color`.
    pub fn style(&self, px: f64, color: &RGBColor) -> TextStyle<'static> {
        (FAMILY, px * self.scale).into_font().color(color)
    }

    /// Draws `s` at `pos` of `area` (relative to the area), anchored as `style` says.
    pub fn text<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        s: &str,
        style: &TextStyle<'_>,
        pos: (i32, i32),
    ) -> Result<(), String> {
        let d = (style.font.get_size() * self.shift).round() as i32;
        let (dx, dy) = style.font.get_transform().transform(0, d);
        area.draw_text(s, style, (pos.0 + dx, pos.1 + dy)).map_err(err)
    }

    /// The size of `s` in `style` (px).
    pub fn measure<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        s: &str,
        style: &TextStyle<'_>,
    ) -> Result<(u32, u32), String> {
        area.estimate_text_size(s, style).map_err(err)
    }
}

/// A numeric axis: range, tick positions and labels, optional log10 scale.
#[derive(Debug, Clone)]
pub struct Axis {
    /// Lower bound (in plotted coordinates: log10 of the value on log axes).
    pub lo: f64,
    /// Upper bound (plotted coordinates).
    pub hi: f64,
    /// Labelled ticks (plotted coordinates).
    pub ticks: Vec<f64>,
    /// Unlabelled minor grid lines (plotted coordinates).
    pub minor: Vec<f64>,
    /// log10 scale.
    pub log: bool,
    /// Decimals of tick labels (linear axes).
    decimals: usize,
}

impl Axis {
    /// A linear axis over `[lo, hi]` with about `n` ticks at 1-2-2.5-5 steps; the bounds are
    /// widened to the enclosing ticks when `snap`.
    pub fn linear(lo: f64, hi: f64, n: usize, snap: bool) -> Axis {
        let (lo, hi) = if hi > lo { (lo, hi) } else { (lo - 1.0, lo + 1.0) };
        let raw = (hi - lo) / n.max(1) as f64;
        let mag = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 2.5, 5.0, 10.0]
            .iter()
            .map(|m| m * mag)
            .find(|s| *s >= raw * 0.999)
            .unwrap_or(10.0 * mag);
        let (lo, hi) =
            if snap { ((lo / step).floor() * step, (hi / step).ceil() * step) } else { (lo, hi) };
        let first = (lo / step - 1e-9).ceil() as i64;
        let last = (hi / step + 1e-9).floor() as i64;
        let ticks: Vec<f64> = (first..=last).map(|k| k as f64 * step).collect();
        // Enough decimals for the step: 2.5 needs one, 0.25 two, 25 none.
        let mantissa = step / mag;
        let extra = i32::from((mantissa - 2.5).abs() < 1e-9);
        let decimals = (-(mag.log10().round() as i32) + extra).max(0) as usize;
        Axis { lo, hi, ticks, minor: Vec::new(), log: false, decimals }
    }

    /// A log10 axis covering `[lo, hi]` (both > 0), widened to 1-2-5 boundaries.
    pub fn log(lo: f64, hi: f64) -> Axis {
        let lo = lo.max(1e-9);
        let hi = hi.max(lo * 1.01);
        let steps = [1.0, 2.0, 5.0];
        let (e0, e1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        let mut candidates: Vec<f64> = Vec::new();
        for e in e0..=e1 {
            for m in steps {
                candidates.push(m * 10f64.powi(e));
            }
        }
        let lo_b = candidates.iter().rev().find(|c| **c <= lo * 1.0001).copied().unwrap_or(lo);
        let hi_b = candidates.iter().find(|c| **c >= hi * 0.9999).copied().unwrap_or(hi);
        let decades = (hi_b / lo_b).log10();
        let inside = |v: &f64| *v >= lo_b * 0.9999 && *v <= hi_b * 1.0001;
        let ticks: Vec<f64> = candidates
            .iter()
            .filter(|v| inside(v))
            .filter(|v| decades <= 3.5 || (v.log10() - v.log10().round()).abs() < 1e-9)
            .map(|v| v.log10())
            .collect();
        let mut minor = Vec::new();
        for e in e0..=e1 {
            for m in 1..10 {
                let v = f64::from(m) * 10f64.powi(e);
                if inside(&v) {
                    minor.push(v.log10());
                }
            }
        }
        Axis { lo: lo_b.log10(), hi: hi_b.log10(), ticks, minor, log: true, decimals: 0 }
    }

    /// The plotted coordinate of value `v`.
    pub fn map(&self, v: f64) -> f64 {
        if self.log {
            v.max(1e-12).log10()
        } else {
            v
        }
    }

    /// The label of plotted coordinate `c`.
    pub fn label(&self, c: f64) -> String {
        if self.log {
            let v = 10f64.powf(c);
            let d = if v >= 1.0 { 0 } else { (-v.log10()).ceil() as usize };
            format!("{v:.d$}")
        } else {
            let d = self.decimals;
            let s = format!("{c:.d$}");
            if s.trim_start_matches('-').chars().all(|ch| ch == '0' || ch == '.') {
                format!("{:.d$}", 0.0)
            } else {
                s
            }
        }
    }
}

/// An [`Axis`] is its own plotters coordinate: the mesh draws labelled grid lines at its
/// ticks and light ones at its minor points (plotters' `WithKeyPoints` over `f64` has no
/// default label formatter, so the mesh would not accept it).
impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let span = self.hi - self.lo;
        if span <= 0.0 {
            return (limit.0 + limit.1) / 2;
        }
        let frac = ((v - self.lo) / span).clamp(-10.0, 10.0);
        let len = f64::from(limit.1 - limit.0);
        limit.0 + (len * frac + if len >= 0.0 { 1e-3 } else { -1e-3 }).floor() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.minor.clone()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// How a legend entry is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swatch {
    /// A filled box (bars).
    Box,
    /// A line with a dot (lines with markers).
    LineDot,
    /// A plain line.
    Line,
    /// A dashed line.
    Dashed,
    /// A dashed line with a dot.
    DashedDot,
    /// A dot (scatter points).
    Dot,
    /// No symbol: a line of text under the previous entry.
    Text,
}

/// One legend entry.
#[derive(Debug, Clone)]
pub struct LegendEntry {
    /// Text.
    pub label: String,
    /// Colour.
    pub color: RGBColor,
    /// Symbol.
    pub swatch: Swatch,
}

/// Error text of a drawing failure.
pub fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

const SWATCH_W: i32 = 36;

/// Clears `root`, draws the title, subtitle and a legend column on the right, and returns
/// the area left for the chart. Legends sit outside the data area so they never cover data.
pub fn frame<DB: DrawingBackend>(
    pen: &Pen,
    root: &DrawingArea<DB, Shift>,
    title: &str,
    subtitle: &str,
    legend: &[LegendEntry],
) -> Result<DrawingArea<DB, Shift>, String> {
    root.fill(&WHITE).map_err(err)?;
    let (w, _) = root.dim_in_pixel();
    let mut top = 14;
    pen.text(root, title, &pen.style(TITLE_PX, &BLACK), (24, top))?;
    top += TITLE_PX as i32 + 10;
    if !subtitle.is_empty() {
        pen.text(root, subtitle, &pen.style(TEXT_PX - 2.0, &GREY), (24, top))?;
        top += TEXT_PX as i32 + 6;
    }
    let body = root.split_vertically(top + 8).1;
    if legend.is_empty() {
        return Ok(body.margin(0, 0, 12, 24));
    }
    let style = pen.style(TEXT_PX, &INK);
    let mut text_w = 0;
    for e in legend {
        text_w = text_w.max(pen.measure(root, &e.label, &style)?.0 as i32);
    }
    let legend_w = (SWATCH_W + 12 + text_w + 28).min(w as i32 / 3);
    let (chart, side) = body.split_horizontally(w as i32 - legend_w);
    let row = TEXT_PX as i32 + 14;
    for (i, e) in legend.iter().enumerate() {
        let y = 16 + i as i32 * row + row / 2;
        let x = 6;
        let c = e.color;
        match e.swatch {
            Swatch::Box => side
                .draw(&Rectangle::new([(x + 6, y - 9), (x + SWATCH_W - 6, y + 9)], c.filled()))
                .map_err(err)?,
            Swatch::Dot => {
                side.draw(&Circle::new((x + SWATCH_W / 2, y), 8, c.filled())).map_err(err)?
            }
            Swatch::Text => {}
            Swatch::Line | Swatch::LineDot => {
                side.draw(&PathElement::new(vec![(x, y), (x + SWATCH_W, y)], c.stroke_width(4)))
                    .map_err(err)?;
                if e.swatch == Swatch::LineDot {
                    side.draw(&Circle::new((x + SWATCH_W / 2, y), 6, c.filled())).map_err(err)?;
                }
            }
            Swatch::Dashed | Swatch::DashedDot => {
                for (a, b) in [(0, 10), (15, 21), (26, SWATCH_W)] {
                    side.draw(&PathElement::new(vec![(x + a, y), (x + b, y)], c.stroke_width(4)))
                        .map_err(err)?;
                }
                if e.swatch == Swatch::DashedDot {
                    side.draw(&Circle::new((x + SWATCH_W / 2, y), 6, c.filled())).map_err(err)?;
                }
            }
        }
        pen.text(
            &side,
            &e.label,
            &style.pos(Pos::new(HPos::Left, VPos::Center)),
            (x + SWATCH_W + 12, y),
        )?;
    }
    Ok(chart.margin(0, 0, 12, 12))
}

/// Width (px) of the widest of `labels` in tick style, for sizing the y label area.
pub fn label_width<DB: DrawingBackend>(
    pen: &Pen,
    area: &DrawingArea<DB, Shift>,
    labels: impl IntoIterator<Item = String>,
) -> Result<u32, String> {
    let style = pen.style(TICK_PX, &INK);
    let mut w = 0;
    for l in labels {
        w = w.max(pen.measure(area, &l, &style)?.0);
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows (top, bottom) of the dark pixels of "H0" drawn by the bitmap pen at y = 50.
    fn ink_rows(v: VPos) -> (usize, usize) {
        register_font().expect("font");
        let (w, h) = (200usize, 100usize);
        let mut buf = vec![255u8; w * h * 3];
        {
            let root =
                BitMapBackend::with_buffer(&mut buf, (w as u32, h as u32)).into_drawing_area();
            let style = Pen::BITMAP.style(20.0, &BLACK).pos(Pos::new(HPos::Left, v));
            Pen::BITMAP.text(&root, "H0", &style, (10, 50)).expect("draws");
            root.present().expect("presents");
        }
        let rows: Vec<usize> =
            (0..h).filter(|r| (0..w).any(|c| buf[(r * w + c) * 3] < 128)).collect();
        (rows[0], rows[rows.len() - 1])
    }

    #[test]
    fn bitmap_text_sits_on_its_anchor() {
        let (top, bottom) = ink_rows(VPos::Center);
        assert!(((top + bottom) as i32 - 100).abs() <= 3, "centred text at rows {top}..={bottom}");
        let (top, _) = ink_rows(VPos::Top);
        assert!((50..=54).contains(&top), "top-anchored text starts at row {top}");
        let (_, bottom) = ink_rows(VPos::Bottom);
        assert!((44..=50).contains(&bottom), "bottom-anchored text ends at row {bottom}");
        // About 20 px cap-to-cap: the nominal size is the em, as in SVG.
        let (top, bottom) = ink_rows(VPos::Center);
        assert!((13..=16).contains(&(bottom - top)), "cap height {}", bottom - top);
    }

    #[test]
    fn ticks() {
        let a = Axis::linear(0.0, 2263.0 * 1.1, 6, true);
        assert_eq!(a.ticks, vec![0.0, 500.0, 1000.0, 1500.0, 2000.0, 2500.0]);
        assert_eq!((a.lo, a.hi), (0.0, 2500.0));
        assert_eq!(a.label(1000.0), "1000");
        let f = Axis::linear(0.0, 1.0, 5, false);
        assert_eq!(f.label(0.4), "0.4");
        let q = Axis::linear(0.0, 19.0, 8, true);
        let labels: Vec<String> = q.ticks.iter().map(|t| q.label(*t)).collect();
        assert_eq!(labels, ["0.0", "2.5", "5.0", "7.5", "10.0", "12.5", "15.0", "17.5", "20.0"]);
        let l = Axis::log(3.0, 4500.0);
        let labels: Vec<String> = l.ticks.iter().map(|t| l.label(*t)).collect();
        assert_eq!(
            labels,
            ["2", "5", "10", "20", "50", "100", "200", "500", "1000", "2000", "5000"]
        );
        let wide = Axis::log(0.01, 1e5);
        let labels: Vec<String> = wide.ticks.iter().map(|t| wide.label(*t)).collect();
        assert_eq!(labels, ["0.01", "0.1", "1", "10", "100", "1000", "10000", "100000"]);
    }
}
