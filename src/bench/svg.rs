//! A small hand-written SVG line chart: throughput against buffer size (log2 x axis), one
//! line per operation, path and kind, the references dashed; [`BenchReport::to_svg`] draws a
//! report's buffer sweep (the downtime sweep's chart is [`BenchReport::to_downtime_svg`]).

use super::report::BenchReport;
use crate::units::format_bytes;
use std::fmt::Write;

/// One line of the chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// `(buffer bytes, bytes per second)` points; sorted by the writer.
    pub points: Vec<(u64, f64)>,
    /// Drawn dashed (reference lines).
    pub dashed: bool,
}

pub(super) const W: f64 = 960.0;
pub(super) const H: f64 = 500.0;
pub(super) const LEFT: f64 = 80.0;
pub(super) const RIGHT: f64 = 300.0;
pub(super) const TOP: f64 = 50.0;
pub(super) const BOTTOM: f64 = 60.0;
pub(super) const COLORS: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#7f7f7f",
];

/// A point of a series, in the chart's pixels, with its hover label.
pub(super) struct Mark {
    pub(super) x: f64,
    pub(super) y: f64,
    /// `VALUE at POSITION`, after the series' name.
    pub(super) label: String,
}

/// How a series is stroked.
#[derive(Clone, Copy)]
pub(super) struct Style {
    pub(super) color: &'static str,
    pub(super) dashed: bool,
}

/// Draws one series as an SVG group: its line (when it has two points or more), a circle per
/// point titled `NAME: LABEL`, and its legend entry, the `legend.1`th at x = `legend.0`.
pub(super) fn draw_series(
    s: &mut String,
    name: &str,
    style: Style,
    marks: &[Mark],
    legend: (f64, usize),
) {
    let color = style.color;
    let dash = if style.dashed {
        r#" stroke-dasharray="6 4""#
    } else {
        ""
    };
    let _ = writeln!(s, r#"<g class="series" data-name="{}">"#, escape(name));
    if marks.len() > 1 {
        let coords: Vec<String> = marks
            .iter()
            .map(|m| format!("{:.1},{:.1}", m.x, m.y))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{}"/>"#,
            coords.join(" ")
        );
    }
    for m in marks {
        let _ = writeln!(
            s,
            r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"><title>{}: {}</title></circle>"#,
            m.x,
            m.y,
            escape(name),
            escape(&m.label)
        );
    }
    let (lx, i) = legend;
    let ly = TOP + 10.0 + i as f64 * 22.0;
    let _ = writeln!(
        s,
        r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"{dash}/>
<text x="{:.1}" y="{:.1}">{}</text>
</g>"#,
        lx + 24.0,
        lx + 30.0,
        ly + 4.0,
        escape(name)
    );
}

/// Escapes text for XML content and attributes.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {}
            c => o.push(c),
        }
    }
    o
}

/// A "nice" tick step (1, 2 or 5 times a power of ten) giving about `target` ticks up to `max`.
pub(super) fn nice_step(max: f64, target: f64) -> f64 {
    let raw = max / target;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    // Tolerance: `raw / mag` is inexact (0.05 / 0.01 = 5.000000000000001).
    let nice = if f <= 1.0 + 1e-9 {
        1.0
    } else if f <= 2.0 + 1e-9 {
        2.0
    } else if f <= 5.0 + 1e-9 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// The plot area's width, inside the margins.
pub(super) const PW: f64 = W - LEFT - RIGHT;
/// The plot area's height, inside the margins.
pub(super) const PH: f64 = H - TOP - BOTTOM;

/// Starts a chart: the XML prologue, a white page and the title.
pub(super) fn begin(title: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect x="0" y="0" width="{W}" height="{H}" fill="white"/>
<text x="{:.1}" y="28" text-anchor="middle" font-size="16" font-weight="bold">{}</text>"#,
        LEFT + PW / 2.0,
        escape(title)
    );
    s
}

/// The horizontal grid of a y axis from 0 to `max`: a line and its label every `step`.
pub(super) fn y_grid(s: &mut String, max: f64, step: f64) {
    let mut k = 0.0;
    while k <= max + step * 1e-9 {
        let y = TOP + PH - k / max * PH;
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e0e0e0"/>
<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + PW,
            LEFT - 8.0,
            y + 4.0,
            trim_float(k)
        );
        k += step;
    }
}

/// A vertical grid line at `x` pixels, labelled `label` under the x axis.
pub(super) fn x_tick(s: &mut String, x: f64, label: &str) {
    let _ = writeln!(
        s,
        r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#f0f0f0"/>
<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
        TOP + PH,
        TOP + PH + 18.0,
        escape(label)
    );
}

/// The two axes and their titles.
pub(super) fn axes(s: &mut String, x_title: &str, y_title: &str) {
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{:.1}" stroke="black"/>
<line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black"/>
<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>
<text x="20" y="{:.1}" text-anchor="middle" transform="rotate(-90 20 {:.1})">{}</text>"##,
        TOP + PH,
        TOP + PH,
        LEFT + PW,
        TOP + PH,
        LEFT + PW / 2.0,
        H - 15.0,
        escape(x_title),
        TOP + PH / 2.0,
        TOP + PH / 2.0,
        escape(y_title)
    );
}

/// Renders the chart. Points with a non-positive size or a non-finite rate are skipped.
pub fn line_chart(title: &str, series: &[Series]) -> String {
    let pts: Vec<Vec<(u64, f64)>> = series
        .iter()
        .map(|s| {
            let mut p: Vec<(u64, f64)> = s
                .points
                .iter()
                .copied()
                .filter(|(b, r)| *b > 0 && r.is_finite() && *r >= 0.0)
                .collect();
            p.sort_by_key(|(b, _)| *b);
            p
        })
        .collect();
    let all = pts.iter().flatten();
    let xmin = all.clone().map(|p| p.0).min().unwrap_or(4096);
    let xmax = all.clone().map(|p| p.0).max().unwrap_or(1 << 20);
    // Whole powers of two around the data.
    let lx0 = (xmin as f64).log2().floor();
    let mut lx1 = (xmax as f64).log2().ceil();
    if lx1 <= lx0 {
        lx1 = lx0 + 1.0;
    }
    const GIB: f64 = (1u64 << 30) as f64;
    let ymax_data = all.map(|p| p.1).fold(0.0f64, f64::max) / GIB;
    let ymax_data = if ymax_data > 0.0 { ymax_data } else { 1.0 };
    let step = nice_step(ymax_data * 1.05, 6.0);
    let ymax = (ymax_data * 1.05 / step).ceil() * step;

    let xpos = |b: u64| LEFT + ((b as f64).log2() - lx0) / (lx1 - lx0) * PW;
    let ypos = |r: f64| TOP + PH - (r / GIB) / ymax * PH;

    let mut s = begin(title);
    y_grid(&mut s, ymax, step);
    // Vertical grid and x labels, one per power of two (thinned when crowded).
    let span = (lx1 - lx0) as u32;
    let every = span.div_ceil(12).max(1);
    for (i, e) in (lx0 as u32..=lx1 as u32).enumerate() {
        if i as u32 % every != 0 {
            continue;
        }
        let b = 1u64 << e;
        x_tick(&mut s, xpos(b), &short_size(b));
    }
    axes(&mut s, "buffer size (log2 scale)", "throughput (GiB/s)");
    for (i, (ser, p)) in series.iter().zip(&pts).enumerate() {
        let marks: Vec<Mark> = p
            .iter()
            .map(|(b, r)| Mark {
                x: xpos(*b),
                y: ypos(*r),
                label: format!("{} at {}", crate::units::format_rate(*r), format_bytes(*b)),
            })
            .collect();
        let style = Style {
            color: COLORS[i % COLORS.len()],
            dashed: ser.dashed,
        };
        draw_series(&mut s, &ser.name, style, &marks, (LEFT + PW + 20.0, i));
    }
    s.push_str("</svg>\n");
    s
}

pub(super) fn trim_float(v: f64) -> String {
    let t = format!("{v:.2}");
    let t = t.trim_end_matches('0').trim_end_matches('.');
    if t.is_empty() {
        "0".into()
    } else {
        t.to_string()
    }
}

/// `4K`, `64K`, `1M`, `2G` for powers of two.
fn short_size(b: u64) -> String {
    for (shift, unit) in [(30, "G"), (20, "M"), (10, "K")] {
        if b >= 1 << shift && b % (1 << shift) == 0 {
            return format!("{}{unit}", b >> shift);
        }
    }
    format!("{b}")
}

impl BenchReport {
    /// The sweep chart: throughput against buffer size, one line per operation, path and
    /// kind measured at more than one buffer size; the physical references dashed.
    pub fn to_svg(&self) -> String {
        let mut series: Vec<Series> = Vec::new();
        for r in &self.results {
            let name = format!(
                "{} {}",
                super::targets::block_name(&r.op, r.path.as_str()),
                r.kind.as_str()
            );
            match series.iter_mut().find(|s| s.name == name) {
                Some(s) => s.points.push((r.buffer_bytes, r.throughput_bytes_per_s)),
                None => series.push(Series {
                    name,
                    points: vec![(r.buffer_bytes, r.throughput_bytes_per_s)],
                    dashed: r.kind == super::config::Kind::Reference,
                }),
            }
        }
        series.retain(|s| s.points.len() > 1);
        let title = format!(
            "vfio-harness bench: {}, {} state",
            self.settings
                .devices
                .first()
                .map(String::as_str)
                .unwrap_or("?"),
            self.results
                .iter()
                .find(|r| r.op == "save" && r.kind != super::config::Kind::Reference)
                .map(|r| format_bytes(r.bytes))
                .unwrap_or_else(|| format_bytes(self.settings.state_bytes))
        );
        line_chart(&title, &series)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart() -> String {
        line_chart(
            "save <&> restore",
            &[
                Series {
                    name: "save".into(),
                    points: vec![(1 << 20, 3e9), (4096, 1e9), (64 << 10, 2e9)],
                    dashed: false,
                },
                Series {
                    name: "memcpy".into(),
                    points: vec![(4096, 5e9), (1 << 20, 5e9)],
                    dashed: true,
                },
            ],
        )
    }

    #[test]
    fn well_formed_and_has_series() {
        let s = chart();
        assert!(s.starts_with("<?xml"));
        assert!(s.trim_end().ends_with("</svg>"));
        // Every opened element is closed (self-closing or paired).
        for tag in ["svg", "g", "text", "circle", "title"] {
            let open =
                s.matches(&format!("<{tag} ")).count() + s.matches(&format!("<{tag}>")).count();
            let close = s.matches(&format!("</{tag}>")).count();
            assert_eq!(open, close, "<{tag}> opened {open} times, closed {close}");
        }
        assert_eq!(s.matches(r#"class="series""#).count(), 2);
        assert!(s.contains(r#"data-name="save""#));
        assert!(s.contains(r#"data-name="memcpy""#));
        assert_eq!(s.matches("<polyline").count(), 2);
        assert_eq!(s.matches("stroke-dasharray").count(), 2); // line + legend of memcpy
                                                              // The title is escaped.
        assert!(s.contains("save &lt;&amp;&gt; restore"));
        assert!(!s.contains("<&>"));
        // x labels at powers of two.
        for l in [">4K<", ">64K<", ">1M<"] {
            assert!(s.contains(l), "missing x label {l}");
        }
    }

    #[test]
    fn points_are_sorted_by_buffer_size() {
        let s = chart();
        let line = s.lines().find(|l| l.contains("<polyline")).unwrap();
        let pts = line
            .split("points=\"")
            .nth(1)
            .unwrap()
            .trim_end_matches("\"/>");
        let xs: Vec<f64> = pts
            .split(' ')
            .map(|p| p.split(',').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(xs.len(), 3);
        assert!(xs.windows(2).all(|w| w[0] < w[1]), "{xs:?}");
    }

    #[test]
    fn empty_chart_is_still_valid() {
        let s = line_chart("nothing", &[]);
        assert!(s.contains("<svg") && s.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(10.0, 5.0), 2.0);
        assert_eq!(nice_step(7.0, 6.0), 2.0);
        assert_eq!(nice_step(0.3, 6.0), 0.05);
        assert_eq!(short_size(3 << 20), "3M");
    }
}
