//! The picture: latency p50/p99 per second on top, failed requests per
//! second below, each restart a vertical mark (grey: a good version, red: a
//! bad one, blue: the supervisor replacing itself). SVG by `plotters`.

use std::path::Path;

use plotters::prelude::*;

use super::outcome::{Second, Span, PROTOS};

/// What kind of restart a mark is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkKind {
    Good,
    Bad,
    Supervisor,
}

impl MarkKind {
    pub fn name(self) -> &'static str {
        match self {
            MarkKind::Good => "good",
            MarkKind::Bad => "bad",
            MarkKind::Supervisor => "supervisor",
        }
    }
}

/// A restart at `at` seconds since the load began.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    pub at: f64,
    pub kind: MarkKind,
}

pub fn draw(
    path: &Path,
    seconds: &[[Second; PROTOS]],
    marks: &[Mark],
    title: &str,
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let root = SVGBackend::new(path, (1400, 760)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (top, bottom) = root.split_vertically(460);
    let xmax = (seconds.len().max(1)) as f64;

    let mut p50 = Vec::new();
    let mut p99 = Vec::new();
    let mut failures = Vec::new();
    for (i, s) in seconds.iter().enumerate() {
        let span = Span::of(std::slice::from_ref(s), 0, 1);
        let h = span.all_latency();
        let x = i as f64 + 0.5;
        if h.total() > 0 {
            p50.push((x, h.quantile_ms(0.5).max(0.01)));
            p99.push((x, h.quantile_ms(0.99).max(0.01)));
        }
        failures.push((x, span.failures() as f64));
    }
    let ymax = p99.iter().map(|p| p.1).fold(1.0f64, f64::max) * 2.0;

    let mut chart = ChartBuilder::on(&top)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..xmax, (0.01f64..ymax).log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .y_desc("latency, ms (log)")
        .x_desc("seconds since the load began")
        .draw()
        .map_err(|e| err(&e))?;
    for m in marks {
        let color = mark_color(m.kind);
        chart
            .draw_series(LineSeries::new(
                [(m.at, 0.01), (m.at, ymax)],
                color.stroke_width(1),
            ))
            .map_err(|e| err(&e))?;
    }
    chart
        .draw_series(LineSeries::new(p50, BLUE.stroke_width(2)))
        .map_err(|e| err(&e))?
        .label("p50")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(p99, MAGENTA.stroke_width(2)))
        .map_err(|e| err(&e))?
        .label("p99")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], MAGENTA.stroke_width(2)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;

    let fmax = failures.iter().map(|p| p.1).fold(1.0f64, f64::max) * 1.2;
    let mut chart = ChartBuilder::on(&bottom)
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..xmax, 0f64..fmax)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .y_desc("failed requests / s")
        .draw()
        .map_err(|e| err(&e))?;
    for m in marks {
        chart
            .draw_series(LineSeries::new(
                [(m.at, 0.0), (m.at, fmax)],
                mark_color(m.kind).stroke_width(1),
            ))
            .map_err(|e| err(&e))?;
    }
    chart
        .draw_series(LineSeries::new(failures, RED.stroke_width(2)))
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

fn mark_color(kind: MarkKind) -> RGBAColor {
    match kind {
        MarkKind::Good => RGBColor(200, 200, 200).mix(0.6),
        MarkKind::Bad => RED.mix(0.5),
        MarkKind::Supervisor => BLUE.mix(0.5),
    }
}
