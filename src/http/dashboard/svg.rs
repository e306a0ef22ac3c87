//! Charts drawn on the server as inline SVG: stacked bars over time and a rate line
//! with threshold lines. Nothing is loaded from elsewhere and no script runs.
//!
//! Every text that goes into the markup passes through [`escape`], so the output may be
//! inserted with askama's `|safe`. Each chart carries a `<title>` and a `<desc>`, each
//! bar and point its own `<title>` (a tooltip), and a table of the same numbers follows
//! in a `<details>` for screen readers and keyboard users.

use std::fmt::Write;

// A 600-unit-wide drawing is shown about 1:1 in a half-width card on a desktop and
// shrinks on a phone; its text is 14 units (see `.chart text` in app.css).
const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 230.0;
const LEFT: f64 = 50.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;
/// Horizontal grid lines divide the scale into this many steps.
const STEPS: u32 = 5;

/// One stacked layer of a bar chart.
#[derive(Clone, Debug)]
pub struct Layer {
    /// Its name in the legend and tooltips.
    pub label: String,
    /// CSS class giving its colour (`c-sent`, `r3`, …).
    pub class: String,
    /// One value per bucket.
    pub values: Vec<i64>,
}

/// A dashed horizontal line at `value` (a threshold).
#[derive(Clone, Debug)]
pub struct Threshold {
    pub value: f64,
    pub label: String,
    pub class: String,
}

/// Escapes text for HTML and SVG content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The smallest 1, 2 or 5 × 10^k at or above `max`, at least 5, so that five steps
/// of the scale are whole numbers.
fn nice_max(max: f64) -> f64 {
    if max <= 5.0 {
        return 5.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    for step in [1.0, 2.0, 5.0, 10.0] {
        if step * magnitude >= max {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

fn axis_label(v: f64, percent: bool) -> String {
    if percent {
        let p = v * 100.0;
        if p.fract().abs() < 1e-9 {
            format!("{p:.0} %")
        } else {
            format!("{p:.1} %")
        }
    } else if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else {
        format!("{v:.0}")
    }
}

fn open_svg(out: &mut String, id: &str, title: &str, desc: &str) {
    let _ = write!(
        out,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{id}-t {id}-d" xmlns="http://www.w3.org/2000/svg"><title id="{id}-t">{}</title><desc id="{id}-d">{}</desc>"#,
        escape(title),
        escape(desc)
    );
}

fn grid(out: &mut String, max: f64, percent: bool) {
    let plot_h = HEIGHT - TOP - BOTTOM;
    for i in 0..=STEPS {
        let v = max * f64::from(i) / f64::from(STEPS);
        let y = TOP + plot_h - plot_h * f64::from(i) / f64::from(STEPS);
        let _ = write!(
            out,
            r#"<line class="grid-line" x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            axis_label(v, percent)
        );
    }
    let _ = write!(
        out,
        r#"<line class="axis" x1="{LEFT}" x2="{}" y1="{:.1}" y2="{:.1}"/>"#,
        WIDTH - RIGHT,
        TOP + plot_h,
        TOP + plot_h
    );
}

fn x_labels(out: &mut String, labels: &[String], slot: f64) {
    if labels.is_empty() {
        return;
    }
    let every = labels.len().div_ceil(6).max(1);
    for (i, label) in labels.iter().enumerate() {
        if i % every != 0 {
            continue;
        }
        let x = LEFT + slot * (i as f64 + 0.5);
        let _ = write!(
            out,
            r#"<text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#,
            HEIGHT - 8.0,
            escape(label)
        );
    }
}

fn legend(out: &mut String, items: &[(String, String, bool)]) {
    out.push_str(r#"<ul class="legend">"#);
    for (label, class, dashed) in items {
        if *dashed {
            let _ = write!(
                out,
                r#"<li><span class="dash {}" aria-hidden="true"></span>{}</li>"#,
                escape(class),
                escape(label)
            );
        } else {
            let _ = write!(
                out,
                r#"<li><span class="swatch {}" aria-hidden="true"></span>{}</li>"#,
                escape(class),
                escape(label)
            );
        }
    }
    out.push_str("</ul>");
}

fn table(out: &mut String, caption: &str, labels: &[String], columns: &[(String, Vec<String>)]) {
    let _ = write!(
        out,
        r#"<details class="small"><summary>Show as a table</summary><div class="table-wrap"><table><caption class="sr-only">{}</caption><thead><tr><th scope="col">Time</th>"#,
        escape(caption)
    );
    for (name, _) in columns {
        let _ = write!(out, r#"<th scope="col" class="num">{}</th>"#, escape(name));
    }
    out.push_str("</tr></thead><tbody>");
    for (i, label) in labels.iter().enumerate() {
        let _ = write!(out, r#"<tr><th scope="row">{}</th>"#, escape(label));
        for (_, values) in columns {
            let _ = write!(
                out,
                r#"<td class="num">{}</td>"#,
                escape(values.get(i).map(String::as_str).unwrap_or(""))
            );
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div></details>");
}

/// A stacked bar chart, one bar per bucket, with its legend and table.
pub fn stacked_bars(
    id: &str,
    title: &str,
    desc: &str,
    labels: &[String],
    layers: &[Layer],
) -> String {
    let mut out = String::new();
    open_svg(&mut out, id, title, desc);
    let totals: Vec<i64> = (0..labels.len())
        .map(|i| {
            layers
                .iter()
                .map(|l| l.values.get(i).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let max = nice_max(totals.iter().copied().max().unwrap_or(0) as f64);
    grid(&mut out, max, false);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot = plot_w / labels.len().max(1) as f64;
    let bar_w = (slot * 0.72).max(1.0);
    for (i, label) in labels.iter().enumerate() {
        let x = LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
        let mut y = TOP + plot_h;
        for layer in layers {
            let v = layer.values.get(i).copied().unwrap_or(0);
            if v <= 0 {
                continue;
            }
            let h = plot_h * v as f64 / max;
            y -= h;
            let _ = write!(
                out,
                r#"<rect class="{}" x="{x:.1}" y="{y:.1}" width="{bar_w:.1}" height="{h:.1}"><title>{}: {} {}</title></rect>"#,
                escape(&layer.class),
                escape(label),
                v,
                escape(&layer.label)
            );
        }
    }
    x_labels(&mut out, labels, slot);
    out.push_str("</svg>");
    legend(
        &mut out,
        &layers
            .iter()
            .map(|l| (l.label.clone(), l.class.clone(), false))
            .collect::<Vec<_>>(),
    );
    let columns: Vec<(String, Vec<String>)> = layers
        .iter()
        .map(|l| {
            (
                l.label.clone(),
                l.values.iter().map(|v| v.to_string()).collect(),
            )
        })
        .collect();
    table(&mut out, title, labels, &columns);
    out
}

/// A rate (0..1) per bucket as a line with dots; buckets without data leave a gap.
/// Thresholds are drawn as dashed lines and the scale always shows them.
pub fn rate_line(
    id: &str,
    title: &str,
    desc: &str,
    labels: &[String],
    values: &[Option<f64>],
    thresholds: &[Threshold],
) -> String {
    let mut out = String::new();
    open_svg(&mut out, id, title, desc);
    let highest = values.iter().flatten().copied().fold(0.0f64, f64::max);
    let top_threshold = thresholds.iter().map(|t| t.value).fold(0.0f64, f64::max);
    // Whole-percent steps, with room above the highest threshold.
    let needed = highest.max(top_threshold * 1.2);
    let max = [0.05, 0.10, 0.15, 0.25, 0.5, 1.0]
        .into_iter()
        .find(|m| *m >= needed - 1e-9)
        .unwrap_or(1.0);
    grid(&mut out, max, true);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot = plot_w / labels.len().max(1) as f64;
    let y_of = |v: f64| TOP + plot_h - plot_h * (v / max).min(1.0);
    for t in thresholds {
        let y = y_of(t.value);
        let _ = write!(
            out,
            r#"<line class="{}" x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}"><title>{}</title></line><text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            escape(&t.class),
            WIDTH - RIGHT,
            escape(&t.label),
            WIDTH - RIGHT - 2.0,
            y - 4.0,
            escape(&t.label)
        );
    }
    let mut path = String::new();
    let mut pen_down = false;
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) => {
                let x = LEFT + slot * (i as f64 + 0.5);
                let _ = write!(
                    path,
                    "{}{x:.1},{:.1} ",
                    if pen_down { "L" } else { "M" },
                    y_of(*v)
                );
                pen_down = true;
            }
            None => pen_down = false,
        }
    }
    if !path.is_empty() {
        let _ = write!(out, r#"<path class="c-rate" d="{}"/>"#, path.trim_end());
    }
    for (i, (label, v)) in labels.iter().zip(values).enumerate() {
        if let Some(v) = v {
            let x = LEFT + slot * (i as f64 + 0.5);
            let _ = write!(
                out,
                r#"<circle class="c-rate-dot" cx="{x:.1}" cy="{:.1}" r="3"><title>{}: {}</title></circle>"#,
                y_of(*v),
                escape(label),
                escape(&super::percent(*v))
            );
        }
    }
    x_labels(&mut out, labels, slot);
    out.push_str("</svg>");
    let mut items = vec![(title.to_owned(), "c-rate-dot".to_owned(), false)];
    items.extend(
        thresholds
            .iter()
            .map(|t| (t.label.clone(), t.class.clone(), true)),
    );
    legend(&mut out, &items);
    let column = values
        .iter()
        .map(|v| v.map(super::percent).unwrap_or_else(|| "no mail".into()))
        .collect();
    table(&mut out, title, labels, &[(title.to_owned(), column)]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_every_bar_has_a_title() {
        let svg = stacked_bars(
            "c",
            "Sent <b>",
            "d",
            &["05:00".into(), "06:00".into()],
            &[Layer {
                label: "x\"y".into(),
                class: "c-sent".into(),
                values: vec![3, 0],
            }],
        );
        assert!(!svg.contains("<b>") && svg.contains("Sent &lt;b&gt;"));
        assert_eq!(svg.matches("<rect").count(), 1);
        assert!(svg.contains("<title>05:00: 3 x&quot;y</title>"));
    }

    #[test]
    fn thresholds_are_always_on_the_scale() {
        let svg = rate_line(
            "r",
            "Bounce rate",
            "d",
            &["a".into(), "b".into(), "c".into()],
            &[Some(0.01), None, Some(0.02)],
            &[Threshold {
                value: 0.10,
                label: "10 % critical".into(),
                class: "c-crit-line".into(),
            }],
        );
        assert!(svg.contains("10 % critical"));
        // Two separate segments: a gap where there was no mail.
        let d = svg
            .split(" d=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("");
        assert_eq!(d.matches('M').count(), 2, "{d}");
        assert!(svg.contains("<circle"));
    }

    #[test]
    fn nice_maxima() {
        assert_eq!(nice_max(0.0), 5.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(130.0), 200.0);
        assert_eq!(nice_max(4500.0), 5000.0);
    }
}
