//! Charts drawn by the server: inline `<svg>` elements written here, every text escaped,
//! colours as presentation attributes (the console's CSP has no inline styles and no
//! script). Each chart carries a `<title>` and the page has the same figures in a table.

use std::fmt::Write;

const WIDTH: f64 = 720.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 16.0;
const PLOT_H: f64 = 180.0;
/// Below the plot: the category labels.
const AXIS_H: f64 = 28.0;
/// Most category labels written under the axis; with more, every n-th.
const MAX_LABELS: usize = 12;

/// The bar colour of the coverage chart.
pub const BAR: &str = "#a3262a";

/// One series of a stacked chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub color: &'static str,
    /// One value per category.
    pub values: Vec<f64>,
}

/// Escapes text for SVG content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn open(out: &mut String, id: &str, title: &str, height: f64) {
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"{id}\" class=\"chart\" role=\"img\" \
         aria-labelledby=\"{id}-title\" viewBox=\"0 0 {WIDTH} {height}\" width=\"{WIDTH}\" \
         height=\"{height}\" font-family=\"sans-serif\" font-size=\"11\">\
         <title id=\"{id}-title\">{title}</title>",
        id = esc(id),
        title = esc(title),
    );
}

/// The y axis: grid lines and labels at `ticks` (value, label).
fn y_axis(out: &mut String, ticks: &[(f64, String)], max: f64) {
    for (v, label) in ticks {
        let y = TOP + PLOT_H - v / max * PLOT_H;
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#d5d9de\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#5b636d\">{}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            esc(label)
        );
    }
}

/// The category labels under the plot (every n-th when there are many).
fn x_labels(out: &mut String, categories: &[String], slot: f64) {
    let step = categories.len().div_ceil(MAX_LABELS).max(1);
    for (i, c) in categories.iter().enumerate() {
        if i % step != 0 {
            continue;
        }
        let x = LEFT + slot * (i as f64 + 0.5);
        let _ = write!(
            out,
            "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#1f2328\">{}</text>",
            TOP + PLOT_H + 16.0,
            esc(c)
        );
    }
}

/// A bar per category for shares (0–1), the axis in percent; `None` (no denominator) is
/// drawn as no bar and labelled `—`.
pub fn percent_bars(
    id: &str,
    title: &str,
    categories: &[String],
    values: &[Option<f64>],
) -> String {
    let height = TOP + PLOT_H + AXIS_H;
    let mut out = String::new();
    open(&mut out, id, title, height);
    let ticks: Vec<(f64, String)> = (0..=4)
        .map(|i| (f64::from(i) * 0.25, format!("{}%", i * 25)))
        .collect();
    y_axis(&mut out, &ticks, 1.0);
    let n = categories.len().max(1);
    let slot = (WIDTH - LEFT - RIGHT) / n as f64;
    let bar = slot * 0.6;
    let labelled = n <= MAX_LABELS;
    for (i, v) in values.iter().enumerate().take(categories.len()) {
        let cx = LEFT + slot * (i as f64 + 0.5);
        let label = categories.get(i).map(String::as_str).unwrap_or("");
        match v {
            Some(v) => {
                let v = v.clamp(0.0, 1.0);
                let h = v * PLOT_H;
                let y = TOP + PLOT_H - h;
                let _ = write!(
                    out,
                    "<rect class=\"bar\" x=\"{:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" \
                     height=\"{h:.1}\" fill=\"{BAR}\"><title>{}: {:.1}%</title></rect>",
                    cx - bar / 2.0,
                    esc(label),
                    v * 100.0
                );
                if labelled {
                    // Inside a tall bar (white), else above it.
                    let (ty, fill) = if h > 20.0 {
                        (y + 14.0, "#ffffff")
                    } else {
                        (y - 4.0, "#1f2328")
                    };
                    let _ = write!(
                        out,
                        "<text x=\"{cx:.1}\" y=\"{ty:.1}\" text-anchor=\"middle\" \
                         fill=\"{fill}\">{:.0}%</text>",
                        v * 100.0
                    );
                }
            }
            None => {
                let _ = write!(
                    out,
                    "<text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" \
                     fill=\"#5b636d\">—</text>",
                    TOP + PLOT_H - 4.0
                );
            }
        }
    }
    x_labels(&mut out, categories, slot);
    out.push_str("</svg>");
    out
}

/// The smallest of 1, 2 or 5 × 10ⁿ at or above `x` (at least 1): a round axis top.
fn nice_max(x: f64) -> f64 {
    if !x.is_finite() || x <= 1.0 {
        return 1.0;
    }
    let mut p = 1.0;
    while p * 10.0 < x {
        p *= 10.0;
    }
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|v| *v >= x)
        .unwrap_or(p * 10.0)
}

/// Stacked columns: one per category, one segment per series (counts), with a legend.
pub fn stacked_columns(id: &str, title: &str, categories: &[String], series: &[Series]) -> String {
    let legend_rows = series.len().div_ceil(6).max(1);
    let height = TOP + PLOT_H + AXIS_H + 18.0 * legend_rows as f64;
    let mut out = String::new();
    open(&mut out, id, title, height);
    let totals: Vec<f64> = (0..categories.len())
        .map(|i| {
            series
                .iter()
                .map(|s| s.values.get(i).copied().unwrap_or(0.0).max(0.0))
                .sum()
        })
        .collect();
    // At least 5: the ticks (fifths) of a count axis stay whole numbers.
    let max = nice_max(totals.iter().copied().fold(0.0, f64::max)).max(5.0);
    let ticks: Vec<(f64, String)> = (0..=5)
        .map(|i| {
            let v = max * f64::from(i) / 5.0;
            let label = if v.fract() == 0.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            };
            (v, label)
        })
        .collect();
    y_axis(&mut out, &ticks, max);
    let n = categories.len().max(1);
    let slot = (WIDTH - LEFT - RIGHT) / n as f64;
    let bar = slot * 0.6;
    for (i, c) in categories.iter().enumerate() {
        let x = LEFT + slot * (i as f64 + 0.5) - bar / 2.0;
        let mut base = TOP + PLOT_H;
        for s in series {
            let v = s.values.get(i).copied().unwrap_or(0.0).max(0.0);
            if v <= 0.0 {
                continue;
            }
            let h = v / max * PLOT_H;
            base -= h;
            let _ = write!(
                out,
                "<rect class=\"segment\" x=\"{x:.1}\" y=\"{base:.1}\" width=\"{bar:.1}\" \
                 height=\"{h:.1}\" fill=\"{}\"><title>{} {}: {v}</title></rect>",
                s.color,
                esc(c),
                esc(&s.label)
            );
        }
    }
    x_labels(&mut out, categories, slot);
    let legend_top = TOP + PLOT_H + AXIS_H;
    for (i, s) in series.iter().enumerate() {
        let x = LEFT + (i % 6) as f64 * 110.0;
        let y = legend_top + (i / 6) as f64 * 18.0;
        let _ = write!(
            out,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"10\" height=\"10\" fill=\"{}\"/>\
             <text class=\"legend\" x=\"{:.1}\" y=\"{:.1}\" fill=\"#1f2328\">{}</text>",
            s.color,
            x + 14.0,
            y + 9.0,
            esc(&s.label)
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_bars_are_proportional_and_escaped() {
        let svg = percent_bars(
            "cov",
            "覆盖率 <script>",
            &["2026-11".into(), "<b>".into(), "2027-01".into()],
            &[Some(0.5), Some(1.0), None],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(!svg.contains("<script>") && !svg.contains("<b>"));
        assert!(svg.contains("&lt;b&gt;"));
        assert_eq!(
            svg.matches("class=\"bar\"").count(),
            2,
            "no bar for no register"
        );
        assert!(svg.contains("height=\"90.0\""), "half the plot for 50%");
        assert!(svg.contains("height=\"180.0\""), "the whole plot for 100%");
        assert!(svg.contains(">—</text>"));
        assert!(
            !svg.contains("style="),
            "no inline style: the CSP refuses it"
        );
    }

    #[test]
    fn stacked_columns_stack_to_their_totals() {
        let cats = vec!["2026-11".to_string(), "2026-12".to_string()];
        let series = vec![
            Series {
                label: "已点单".into(),
                color: "#111111",
                values: vec![3.0, 0.0],
            },
            Series {
                label: "办理中 & \"其他\"".into(),
                color: "#222222",
                values: vec![1.0, 2.0],
            },
        ];
        let svg = stacked_columns("tasks", "代办", &cats, &series);
        // Totals 4 and 2: the axis tops at 5; 3 of 5 is 108 px of 180.
        assert!(svg.contains(">5</text>"));
        assert!(svg.contains("height=\"108.0\""));
        assert_eq!(svg.matches("class=\"segment\"").count(), 3, "none for a 0");
        assert!(svg.contains("办理中 &amp; &quot;其他&quot;"));
        assert_eq!(svg.matches("class=\"legend\"").count(), 2);
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(11.0), 20.0);
        assert_eq!(nice_max(120.0), 200.0);
        assert_eq!(nice_max(500.0), 500.0);
    }
}
