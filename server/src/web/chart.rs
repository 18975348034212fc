//! Charts drawn on the server as inline SVG: no script and no chart library in
//! the browser, readable by screen readers (each chart is an image with a
//! title and a description, followed by its numbers as a table), and printable.
//!
//! [`BarChart`] draws horizontal bars, grouped when there are several series
//! (e.g. planned against completed visits per rep). Labels and values are
//! escaped by maud; values that are not finite numbers count as zero.

use maud::{Markup, html};

/// One series of a bar chart: a name and one value per category.
#[derive(Debug, Clone)]
pub struct Series {
    /// What the series measures (shown in the legend).
    pub name: String,
    /// One value per category, in category order.
    pub values: Vec<f64>,
}

/// A horizontal bar chart with one bar per category and series.
#[derive(Debug, Clone)]
pub struct BarChart {
    /// Unique on the page; used for the ids that name the chart.
    pub id: String,
    /// The chart's title.
    pub title: String,
    /// The unit of the values, e.g. `reports` or `EUR`.
    pub unit: String,
    /// Category labels (rows), e.g. reps.
    pub categories: Vec<String>,
    /// The series; one bar per category each.
    pub series: Vec<Series>,
}

/// Width of the drawing, in SVG units (it scales to its container).
const WIDTH: f64 = 640.0;
/// Room for the category labels on the left.
const LABEL_W: f64 = 150.0;
/// Room for the value after each bar.
const VALUE_W: f64 = 90.0;
/// Height of one bar.
const BAR_H: f64 = 16.0;
/// Space between category groups.
const GAP: f64 = 10.0;

fn clean(v: f64) -> f64 {
    if v.is_finite() { v.max(0.0) } else { 0.0 }
}

/// A value as the chart writes it: whole numbers without decimals.
pub fn number(v: f64) -> String {
    let v = clean(v);
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

impl BarChart {
    /// The largest value drawn (at least 1, so an all-zero chart draws no bars).
    fn max(&self) -> f64 {
        self.series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .map(clean)
            .fold(0.0, f64::max)
            .max(1.0)
    }

    fn value(&self, series: usize, category: usize) -> f64 {
        self.series
            .get(series)
            .and_then(|s| s.values.get(category))
            .copied()
            .map_or(0.0, clean)
    }

    /// The chart: an SVG image and the same numbers as a table.
    pub fn render(&self) -> Markup {
        let title_id = format!("{}-title", self.id);
        let desc_id = format!("{}-desc", self.id);
        if self.categories.is_empty() {
            return html! {
                figure.chart {
                    figcaption #(title_id) { (self.title) }
                    p.empty { "No data for this selection." }
                }
            };
        }
        let groups = self.series.len().max(1) as f64;
        let group_h = groups * BAR_H + GAP;
        let legend_h = if self.series.len() > 1 { 24.0 } else { 0.0 };
        let height = legend_h + group_h * self.categories.len() as f64 + GAP;
        let scale = (WIDTH - LABEL_W - VALUE_W) / self.max();
        let desc = format!(
            "{} for {} categories; the numbers follow as a table.",
            self.series
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(" and "),
            self.categories.len()
        );
        html! {
            figure.chart {
                figcaption #(title_id) { (self.title) " (" (self.unit) ")" }
                svg xmlns="http://www.w3.org/2000/svg" role="img"
                    viewBox=(format!("0 0 {WIDTH} {height}"))
                    aria-labelledby=(title_id) aria-describedby=(desc_id) {
                    desc #(desc_id) { (desc) }
                    @if self.series.len() > 1 {
                        @for (s, series) in self.series.iter().enumerate() {
                            rect class=(format!("bar s{}", s % 4))
                                x=(format!("{:.1}", LABEL_W + s as f64 * 140.0)) y="4"
                                width="12" height="12" {}
                            text x=(format!("{:.1}", LABEL_W + s as f64 * 140.0 + 16.0)) y="15" {
                                (series.name)
                            }
                        }
                    }
                    @for (c, label) in self.categories.iter().enumerate() {
                        @let top = legend_h + GAP + c as f64 * group_h;
                        text.label x=(format!("{:.1}", LABEL_W - 8.0))
                            y=(format!("{:.1}", top + groups * BAR_H / 2.0 + 4.0))
                            text-anchor="end" { (label) }
                        @for s in 0..self.series.len() {
                            @let v = self.value(s, c);
                            @let y = top + s as f64 * BAR_H;
                            rect class=(format!("bar s{}", s % 4)) x=(format!("{LABEL_W:.1}"))
                                y=(format!("{y:.1}")) height=(format!("{:.1}", BAR_H - 2.0))
                                width=(format!("{:.1}", v * scale)) {
                                title { (label) ", " (self.series[s].name) ": " (number(v)) " " (self.unit) }
                            }
                            text.value x=(format!("{:.1}", LABEL_W + v * scale + 4.0))
                                y=(format!("{:.1}", y + BAR_H - 4.0)) { (number(v)) }
                        }
                    }
                }
                details {
                    summary { "Numbers" }
                    table {
                        thead { tr {
                            th scope="col" { "" }
                            @for s in &self.series { th scope="col" { (s.name) } }
                        } }
                        tbody {
                            @for (c, label) in self.categories.iter().enumerate() {
                                tr {
                                    th scope="row" { (label) }
                                    @for s in 0..self.series.len() {
                                        td { (number(self.value(s, c))) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(values: Vec<f64>) -> BarChart {
        BarChart {
            id: "c".into(),
            title: "Reports per rep".into(),
            unit: "reports".into(),
            categories: vec!["Ana".into(), "<Ben>".into()],
            series: vec![Series {
                name: "Reports".into(),
                values,
            }],
        }
    }

    fn widths(svg: &str) -> Vec<f64> {
        svg.split("width=\"")
            .skip(1)
            .filter_map(|s| s.split('"').next()?.parse().ok())
            .collect()
    }

    #[test]
    fn bars_are_proportional_to_their_values() {
        let html = chart(vec![2.0, 4.0]).render().into_string();
        let w = widths(&html);
        assert_eq!(w.len(), 2, "{html}");
        assert!((w[1] - 2.0 * w[0]).abs() < 0.2, "{w:?}");
        assert!(
            (w[1] - (WIDTH - LABEL_W - VALUE_W)).abs() < 0.2,
            "the largest fills the room"
        );
    }

    #[test]
    fn labels_are_escaped_and_bad_numbers_draw_nothing() {
        let html = chart(vec![f64::NAN, -3.0]).render().into_string();
        assert!(html.contains("&lt;Ben&gt;") && !html.contains("<Ben>"));
        assert_eq!(widths(&html), [0.0, 0.0]);
        assert!(html.contains("role=\"img\"") && html.contains("<table>"));
    }

    #[test]
    fn an_empty_chart_says_so() {
        let mut c = chart(vec![]);
        c.categories.clear();
        assert!(c.render().into_string().contains("No data"));
    }

    #[test]
    fn several_series_draw_grouped_bars_with_a_legend() {
        let mut c = chart(vec![1.0, 2.0]);
        c.series.push(Series {
            name: "Approved".into(),
            values: vec![1.0],
        });
        let html = c.render().into_string();
        // Two legend swatches (width 12) and four bars, the missing value drawn as zero.
        assert_eq!(widths(&html).len(), 6, "{html}");
        assert!(html.contains("Approved"));
    }
}
