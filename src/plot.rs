//! Dependency-free SVG line charts for evaluation reports.
//!
//! `moderato eval --report DIR` uses [`line_chart_svg`] to draw ROC and
//! precision-recall curves as standalone SVG files that open in any browser.
//! Both axes span [0, 1]; the plot area is square, the y axis points upward,
//! and the legend sits below the x-axis label. All text is XML-escaped, and
//! non-finite points are skipped so the document never contains `NaN`.

use std::fmt::{self, Write};

/// One curve to draw: a name for the legend and its (x, y) points in [0, 1] x [0, 1].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Curve {
    /// Legend label for the curve.
    pub name: String,
    /// Points in drawing order; non-finite points are skipped, others clamped to [0, 1].
    pub points: Vec<(f64, f64)>,
}

/// Line colours, cycled when there are more curves than colours (Tableau 10).
const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];
const WIDTH: f64 = 640.0;
/// Side of the square plot area.
const PLOT: f64 = 500.0;
const LEFT: f64 = 90.0;
const TOP: f64 = 60.0;
/// Top of the legend block, below the x-axis label.
const LEGEND_TOP: f64 = 640.0;
const LEGEND_ROW: f64 = 22.0;
const LEGEND_COLUMNS: usize = 2;
/// Longest legend label in characters before it is shortened with an ellipsis.
const LEGEND_MAX_CHARS: usize = 32;

/// Renders a square line chart as a standalone SVG document: title, axis labels, grid and ticks at 0, 0.2, …, 1, one coloured polyline per curve, a legend, and an optional dashed diagonal (chance line for ROC).
pub fn line_chart_svg(
    title: &str,
    x_label: &str,
    y_label: &str,
    curves: &[Curve],
    diagonal: bool,
) -> String {
    let mut svg = String::with_capacity(4096 + curves.len() * 2048);
    // Writing into a String cannot fail.
    let _ = write_chart(&mut svg, title, x_label, y_label, curves, diagonal);
    svg
}

/// Writes the whole document; split out so `?` can propagate `fmt::Error`.
fn write_chart(
    svg: &mut String,
    title: &str,
    x_label: &str,
    y_label: &str,
    curves: &[Curve],
    diagonal: bool,
) -> fmt::Result {
    let rows = curves.len().div_ceil(LEGEND_COLUMNS);
    let height = LEGEND_TOP + rows as f64 * LEGEND_ROW;
    writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">"#
    )?;
    writeln!(
        svg,
        r#"<rect width="{WIDTH}" height="{height}" fill="white"/>"#
    )?;
    let title_attrs = r#"text-anchor="middle" font-size="18" font-weight="bold""#;
    write_text(svg, x_px(0.5), 32.0, title_attrs, title)?;
    write_axes(svg, x_label, y_label)?;
    if diagonal {
        writeln!(
            svg,
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#888888" stroke-width="1.5" stroke-dasharray="6 4"/>"##,
            x_px(0.0),
            y_px(0.0),
            x_px(1.0),
            y_px(1.0)
        )?;
    }
    for (i, curve) in curves.iter().enumerate() {
        write_polyline(svg, curve, PALETTE[i % PALETTE.len()])?;
    }
    write_legend(svg, curves)?;
    svg.push_str("</svg>\n");
    Ok(())
}

/// Writes the grid, tick labels, plot frame and axis labels.
fn write_axes(svg: &mut String, x_label: &str, y_label: &str) -> fmt::Result {
    let (left, right) = (x_px(0.0), x_px(1.0));
    let (bottom, top) = (y_px(0.0), y_px(1.0));
    writeln!(svg, r##"<g stroke="#e0e0e0" stroke-width="1">"##)?;
    for v in ticks() {
        let (x, y) = (x_px(v), y_px(v));
        writeln!(
            svg,
            r#"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{bottom:.1}"/>"#
        )?;
        writeln!(
            svg,
            r#"<line x1="{left:.1}" y1="{y:.1}" x2="{right:.1}" y2="{y:.1}"/>"#
        )?;
    }
    svg.push_str("</g>\n");
    writeln!(
        svg,
        r#"<rect x="{left:.1}" y="{top:.1}" width="{PLOT}" height="{PLOT}" fill="none" stroke="black"/>"#
    )?;
    writeln!(svg, r##"<g font-size="12" fill="#333333">"##)?;
    for v in ticks() {
        let label = format!("{v:.1}");
        write_text(
            svg,
            x_px(v),
            bottom + 18.0,
            r#"text-anchor="middle""#,
            &label,
        )?;
        write_text(
            svg,
            left - 8.0,
            y_px(v) + 4.0,
            r#"text-anchor="end""#,
            &label,
        )?;
    }
    svg.push_str("</g>\n");
    write_text(
        svg,
        x_px(0.5),
        bottom + 48.0,
        r#"text-anchor="middle" font-size="14""#,
        x_label,
    )?;
    let (cx, cy) = (30.0, y_px(0.5));
    write!(
        svg,
        r#"<text transform="translate({cx:.1} {cy:.1}) rotate(-90)" text-anchor="middle" font-size="14">"#
    )?;
    push_escaped(svg, y_label);
    svg.push_str("</text>\n");
    Ok(())
}

/// Writes one curve as a polyline, skipping non-finite points.
fn write_polyline(svg: &mut String, curve: &Curve, colour: &str) -> fmt::Result {
    write!(
        svg,
        r#"<polyline fill="none" stroke="{colour}" stroke-width="2" stroke-linejoin="round" points=""#
    )?;
    let finite = curve
        .points
        .iter()
        .filter(|(x, y)| x.is_finite() && y.is_finite());
    for (i, &(x, y)) in finite.enumerate() {
        let sep = if i == 0 { "" } else { " " };
        write!(svg, "{sep}{:.2},{:.2}", x_px(x), y_px(y))?;
    }
    svg.push_str("\"/>\n");
    Ok(())
}

/// Writes the legend: a colour swatch and the curve name, two entries per row.
fn write_legend(svg: &mut String, curves: &[Curve]) -> fmt::Result {
    let column_width = PLOT / LEGEND_COLUMNS as f64;
    for (i, curve) in curves.iter().enumerate() {
        let x = LEFT + (i % LEGEND_COLUMNS) as f64 * column_width;
        let y = LEGEND_TOP - 8.0 + (i / LEGEND_COLUMNS) as f64 * LEGEND_ROW;
        let colour = PALETTE[i % PALETTE.len()];
        writeln!(
            svg,
            r#"<line x1="{x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{colour}" stroke-width="3"/>"#,
            x + 24.0
        )?;
        write_text(
            svg,
            x + 30.0,
            y + 4.0,
            r#"text-anchor="start" font-size="13""#,
            &shorten(&curve.name, LEGEND_MAX_CHARS),
        )?;
    }
    Ok(())
}

/// Writes a `<text>` element at (x, y) with extra attributes `attrs` (e.g. the anchor).
fn write_text(svg: &mut String, x: f64, y: f64, attrs: &str, text: &str) -> fmt::Result {
    write!(svg, r#"<text x="{x:.1}" y="{y:.1}" {attrs}>"#)?;
    push_escaped(svg, text);
    svg.push_str("</text>\n");
    Ok(())
}

/// Tick positions 0, 0.2, …, 1 on both axes.
fn ticks() -> impl Iterator<Item = f64> {
    (0..=5).map(|i| f64::from(i) / 5.0)
}

/// Maps a data x in [0, 1] (clamped) to SVG pixels.
fn x_px(x: f64) -> f64 {
    LEFT + x.clamp(0.0, 1.0) * PLOT
}

/// Maps a data y in [0, 1] (clamped) to SVG pixels, flipped so larger y is higher.
fn y_px(y: f64) -> f64 {
    TOP + (1.0 - y.clamp(0.0, 1.0)) * PLOT
}

/// Shortens `text` to at most `max` characters, marking the cut with an ellipsis.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut short: String = text.chars().take(max.saturating_sub(1)).collect();
    short.push('…');
    short
}

/// Appends `text` with XML special characters escaped and XML-invalid control characters dropped.
fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(' '),
            c if c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(name: &str, points: &[(f64, f64)]) -> Curve {
        Curve {
            name: name.to_string(),
            points: points.to_vec(),
        }
    }

    /// Minimal well-formedness check: balanced tags, quoted attributes, valid entities.
    fn assert_well_formed(svg: &str) {
        let mut stack: Vec<&str> = Vec::new();
        let mut rest = svg;
        while let Some(open) = rest.find('<') {
            assert_entities_valid(&rest[..open]);
            let close = rest[open..].find('>').expect("unclosed tag") + open;
            let tag = &rest[open + 1..close];
            assert!(!tag.contains('<'), "'<' inside tag {tag:?}");
            assert_eq!(
                tag.matches('"').count() % 2,
                0,
                "unbalanced quotes in {tag:?}"
            );
            assert_entities_valid(tag);
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop(), Some(name.trim()), "mismatched </{name}>");
            } else if !tag.ends_with('/') {
                stack.push(tag.split_whitespace().next().expect("tag name"));
            }
            rest = &rest[close + 1..];
        }
        assert!(stack.is_empty(), "unclosed elements {stack:?}");
        assert_eq!(rest.trim(), "");
    }

    fn assert_entities_valid(text: &str) {
        for (i, _) in text.match_indices('&') {
            let entity = &text[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                    .iter()
                    .any(|e| entity.starts_with(e)),
                "bare '&' in {text:?}"
            );
        }
    }

    #[test]
    fn renders_well_formed_document_with_one_polyline_per_curve() {
        let curves = [
            curve("logistic", &[(0.0, 0.0), (0.1, 0.7), (1.0, 1.0)]),
            curve("naive bayes", &[(0.0, 0.0), (0.3, 0.6), (1.0, 1.0)]),
            curve("مسيء", &[(0.0, 0.0), (1.0, 1.0)]),
        ];
        let svg = line_chart_svg(
            "ROC",
            "False positive rate",
            "True positive rate",
            &curves,
            true,
        );
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_well_formed(&svg);
        assert_eq!(svg.matches("<polyline").count(), curves.len());
        for tag in svg.split("<polyline").skip(1) {
            let tag = &tag[..tag.find("/>").expect("self-closing polyline")];
            assert_eq!(tag.matches(" points=\"").count(), 1, "{tag}");
        }
        for c in &curves {
            assert!(svg.contains(&c.name), "legend lacks {}", c.name);
        }
        for text in [
            "ROC",
            "False positive rate",
            "True positive rate",
            "0.0",
            "0.4",
            "1.0",
        ] {
            assert!(svg.contains(&format!(">{text}</text>")), "missing {text}");
        }
    }

    #[test]
    fn escapes_text() {
        let curves = [curve("x<y & \"z\"", &[(0.5, 0.5)])];
        let svg = line_chart_svg("a<b&c", "it's", "r>0", &curves, false);
        assert_well_formed(&svg);
        assert!(svg.contains(">a&lt;b&amp;c</text>"));
        assert_eq!(
            svg.matches("<text").count(),
            svg.matches("text-anchor=").count()
        );
        assert!(svg.contains(">it&apos;s</text>"));
        assert!(svg.contains(">r&gt;0</text>"));
        assert!(svg.contains(">x&lt;y &amp; &quot;z&quot;</text>"));
        assert!(!svg.contains("a<b"));
    }

    #[test]
    fn diagonal_only_when_requested() {
        let curves = [curve("m", &[(0.0, 0.0), (1.0, 1.0)])];
        let with = line_chart_svg("t", "x", "y", &curves, true);
        let without = line_chart_svg("t", "x", "y", &curves, false);
        assert_eq!(with.matches("stroke-dasharray").count(), 1);
        assert!(!without.contains("stroke-dasharray"));
    }

    #[test]
    fn skips_non_finite_points_and_flips_y() {
        let points = [
            (0.0, 0.0),
            (f64::NAN, 0.5),
            (0.5, f64::INFINITY),
            (1.0, 1.0),
        ];
        let svg = line_chart_svg("t", "x", "y", &[curve("m", &points)], false);
        assert_well_formed(&svg);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        let expected = format!(
            "points=\"{:.2},{:.2} {:.2},{:.2}\"",
            LEFT,
            TOP + PLOT,
            LEFT + PLOT,
            TOP
        );
        assert!(svg.contains(&expected), "{svg}");
    }

    #[test]
    fn palette_cycles_and_empty_inputs_render() {
        let many: Vec<Curve> = (0..12).map(|i| curve(&format!("c{i}"), &[])).collect();
        let svg = line_chart_svg("", "", "", &many, false);
        assert_well_formed(&svg);
        assert_eq!(svg.matches("<polyline").count(), 12);
        assert_eq!(
            svg.matches(PALETTE[0]).count(),
            4,
            "two polylines + two swatches"
        );
        assert_well_formed(&line_chart_svg("empty", "x", "y", &[], true));
    }

    #[test]
    fn long_legend_names_are_shortened() {
        let name = "n".repeat(40);
        let svg = line_chart_svg("t", "x", "y", &[curve(&name, &[])], false);
        let shown = format!("{}…", "n".repeat(LEGEND_MAX_CHARS - 1));
        assert!(svg.contains(&format!(">{shown}</text>")));
    }
}
