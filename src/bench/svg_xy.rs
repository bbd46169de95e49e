//! A line chart with linear axes (the downtime sweep: downtime against the dirty rate as a
//! fraction of the link rate), drawn like [`super::svg::line_chart`]; and
//! [`BenchReport::to_downtime_svg`], the sweep's chart: per link rate, the measured downtime
//! (solid) and the predicted one (dashed).

use super::report::BenchReport;
use super::svg::{
    axes, begin, draw_series, nice_step, trim_float, x_tick, y_grid, Mark, Style, COLORS, LEFT, PH,
    PW, TOP,
};
use crate::units::format_rate;

/// One line of an x-y chart.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct XySeries {
    /// Legend label.
    pub name: String,
    /// `(x, y)` points; sorted by x by the writer.
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed.
    pub dashed: bool,
    /// Colour index (series of one group share a colour).
    pub color: usize,
}

/// Renders the chart: both axes linear from 0. Non-finite points are skipped.
pub(super) fn xy_chart(title: &str, x_label: &str, y_label: &str, series: &[XySeries]) -> String {
    let pts: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| {
            let mut p: Vec<(f64, f64)> = s
                .points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite() && *y >= 0.0 && *x >= 0.0)
                .collect();
            p.sort_by(|a, b| a.0.total_cmp(&b.0));
            p
        })
        .collect();
    let xmax_data = pts.iter().flatten().map(|p| p.0).fold(0.0f64, f64::max);
    let ymax_data = pts.iter().flatten().map(|p| p.1).fold(0.0f64, f64::max);
    let axis = |m: f64| {
        let m = if m > 0.0 { m * 1.05 } else { 1.0 };
        let step = nice_step(m, 6.0);
        (step, (m / step).ceil() * step)
    };
    let (xstep, xmax) = axis(xmax_data);
    let (ystep, ymax) = axis(ymax_data);
    let xpos = |x: f64| LEFT + x / xmax * PW;
    let ypos = |y: f64| TOP + PH - y / ymax * PH;
    let mut s = begin(title);
    y_grid(&mut s, ymax, ystep);
    let mut k = 0.0;
    while k <= xmax + xstep * 1e-9 {
        x_tick(&mut s, xpos(k), &trim_float(k));
        k += xstep;
    }
    axes(&mut s, x_label, y_label);
    for (i, (ser, p)) in series.iter().zip(&pts).enumerate() {
        let marks: Vec<Mark> = p
            .iter()
            .map(|(x, y)| Mark {
                x: xpos(*x),
                y: ypos(*y),
                label: format!("{} at {}", trim_float(*y), trim_float(*x)),
            })
            .collect();
        let style = Style {
            color: COLORS[ser.color % COLORS.len()],
            dashed: ser.dashed,
        };
        draw_series(&mut s, &ser.name, style, &marks, (LEFT + PW + 20.0, i));
    }
    s.push_str("</svg>\n");
    s
}

impl BenchReport {
    /// The downtime sweep's chart: downtime (ms) against the dirty rate over the link rate,
    /// per link rate the measured downtime (solid) and the predicted one (dashed). A chart
    /// with no series when the sweep did not run.
    pub fn to_downtime_svg(&self) -> String {
        let mut series: Vec<XySeries> = Vec::new();
        if let Some(d) = &self.downtime {
            let mut links: Vec<f64> = d.points.iter().map(|p| p.link_bytes_per_s).collect();
            links.sort_by(f64::total_cmp);
            links.dedup();
            for (i, link) in links.iter().enumerate() {
                let at: Vec<_> = d
                    .points
                    .iter()
                    .filter(|p| p.link_bytes_per_s == *link)
                    .collect();
                let l = format_rate(*link);
                series.push(XySeries {
                    name: format!("measured, link {l}"),
                    points: at
                        .iter()
                        .map(|p| (p.dirty_over_link, p.measured_s * 1e3))
                        .collect(),
                    dashed: false,
                    color: i,
                });
                series.push(XySeries {
                    name: format!("predicted, link {l}"),
                    points: at
                        .iter()
                        .filter_map(|p| p.predicted_s.map(|s| (p.dirty_over_link, s * 1e3)))
                        .collect(),
                    dashed: true,
                    color: i,
                });
            }
        }
        let state = self
            .downtime
            .as_ref()
            .map(|d| crate::units::format_bytes(d.state_bytes))
            .unwrap_or_default();
        xy_chart(
            &format!("vfio-harness bench: downtime, {state} state"),
            "dirty rate / link rate",
            "downtime (ms)",
            &series,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xy_chart_is_well_formed() {
        let s = xy_chart(
            "d <t>",
            "x",
            "y",
            &[
                XySeries {
                    name: "measured".into(),
                    points: vec![(1.0, 30.0), (0.0, 1.0), (0.5, 8.0)],
                    dashed: false,
                    color: 0,
                },
                XySeries {
                    name: "predicted".into(),
                    points: vec![(0.0, 0.5), (f64::NAN, 1.0), (1.0, 29.0)],
                    dashed: true,
                    color: 0,
                },
            ],
        );
        assert!(s.starts_with("<?xml") && s.trim_end().ends_with("</svg>"));
        for tag in ["svg", "g", "text", "circle", "title"] {
            let open =
                s.matches(&format!("<{tag} ")).count() + s.matches(&format!("<{tag}>")).count();
            assert_eq!(open, s.matches(&format!("</{tag}>")).count(), "{tag}");
        }
        assert_eq!(s.matches("<polyline").count(), 2);
        assert_eq!(s.matches("<circle").count(), 5);
        assert!(s.contains("d &lt;t&gt;"));
        assert!(xy_chart("e", "x", "y", &[]).trim_end().ends_with("</svg>"));
    }
}
