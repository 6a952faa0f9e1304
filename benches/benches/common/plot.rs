//! Growth plots as PNG (plotters' bitmap backend with a bundled font: no fontconfig, no system fonts).

#![allow(dead_code)]

use std::path::Path;

use plotters::prelude::*;

/// The bundled font (DejaVu Sans Mono; its licence is next to it).
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSansMono.ttf");

/// One series: a label and its (x, y) points.
pub(crate) struct Series {
    pub(crate) label: String,
    pub(crate) points: Vec<(f64, f64)>,
}

/// One panel of a figure.
pub(crate) struct Panel {
    pub(crate) title: String,
    pub(crate) x_label: String,
    pub(crate) y_label: String,
    pub(crate) series: Vec<Series>,
}

fn upper(v: impl Iterator<Item = f64>) -> f64 {
    let max = v.fold(0.0_f64, f64::max);
    if max <= 0.0 { 1.0 } else { max * 1.15 }
}

/// Draw `panels` side by side into `path` (PNG).
pub(crate) fn draw(path: &Path, panels: &[Panel]) -> Result<(), String> {
    plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| "the bundled font does not load".to_owned())?;
    let width = 640 * u32::try_from(panels.len()).unwrap_or(1);
    let root = BitMapBackend::new(path, (width, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let areas = root.split_evenly((1, panels.len()));
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    for (area, panel) in areas.iter().zip(panels) {
        let points = panel.series.iter().flat_map(|s| s.points.iter());
        let x_max = upper(points.clone().map(|p| p.0));
        let y_max = upper(points.map(|p| p.1));
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(panel.x_label.as_str())
            .y_desc(panel.y_label.as_str())
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, s) in panel.series.iter().enumerate() {
            let color = colors[i % colors.len()];
            chart
                .draw_series(LineSeries::new(s.points.clone(), color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(s.label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
            chart
                .draw_series(s.points.iter().map(|p| Circle::new(*p, 4, color.filled())))
                .map_err(|e| e.to_string())?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 13))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}
