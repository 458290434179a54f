//! The plan's wiring as a standalone SVG image (`netbind plan --output svg`).
//!
//! How it works: the [`Picture`] of the plan is laid on a fixed grid — one column per
//! stage that any row uses (guest NIC, device, bridge/engine, NAT, pod link, network),
//! one horizontal lane per interface — so no layout engine is needed and the same plan
//! always gives the same bytes. A column is as wide as its longest line (text is
//! monospace, so width is characters × a fixed advance); the gap between columns fits
//! the longest edge label. All boxes of a lane have the lane's height, so every arrow is
//! one horizontal line at the lane's middle, skipping empty stages.
//!
//! Written by hand, not with a crate: the image is a few element kinds at computed
//! coordinates, and crates.io's `svg` composer would save little over `format!` while
//! adding a dependency; the text escaping is [`super::xml_escape`], shared with the
//! libvirt XML. Every label goes through it (markup, quotes, control characters and
//! the non-characters XML forbids), so the output is well-formed XML for any plan. A
//! line longer than [`MAX_CHARS`] is cut with `…`; the box's `<title>` (a tooltip)
//! keeps the full text.

use std::fmt::Write;

use super::picture::{Node, Picture, Stage, picture};
use super::xml_escape as esc;
use crate::model::NetworkPlan;

/// Longest line drawn in a box, in characters.
pub const MAX_CHARS: usize = 40;

const MARGIN: usize = 16;
/// Horizontal advance of a 12px monospace character, in tenths of a pixel.
const ADVANCE_TENTHS: usize = 75;
const LABEL_ADVANCE_TENTHS: usize = 62;
const PAD: usize = 8;
const LINE: usize = 15;
const TITLE_LINE: usize = 18;
const HEADER: usize = 22;
const CAPTION: usize = 20;
const LANE_GAP: usize = 12;
const MIN_BOX: usize = 96;
const MIN_GAP: usize = 36;

pub fn render(plan: &NetworkPlan) -> String {
    draw(&picture(plan))
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

fn text_width(n: usize) -> usize {
    (n * ADVANCE_TENTHS).div_ceil(10)
}

fn cut(line: &str) -> String {
    if chars(line) <= MAX_CHARS {
        line.to_string()
    } else {
        let mut s: String = line.chars().take(MAX_CHARS - 1).collect();
        s.push('…');
        s
    }
}

pub fn draw(p: &Picture) -> String {
    // Columns: the stages some row has, in stage order.
    let used: Vec<Stage> = Stage::ALL
        .into_iter()
        .filter(|s| p.rows.iter().any(|r| r.nodes.iter().any(|n| n.stage == *s)))
        .collect();
    let widths: Vec<usize> = used
        .iter()
        .map(|stage| {
            let longest = p
                .rows
                .iter()
                .flat_map(|r| &r.nodes)
                .filter(|n| n.stage == *stage)
                .flat_map(|n| &n.lines)
                .map(|l| chars(l).min(MAX_CHARS))
                .chain([chars(stage.title())])
                .max()
                .unwrap_or(0);
            (text_width(longest) + 2 * PAD).max(MIN_BOX)
        })
        .collect();
    let longest_label = p
        .rows
        .iter()
        .flat_map(|r| &r.edges)
        .map(|e| chars(&e.label).min(MAX_CHARS))
        .max()
        .unwrap_or(0);
    let gap = ((longest_label * LABEL_ADVANCE_TENTHS).div_ceil(10) + 16).max(MIN_GAP);
    let mut xs = Vec::with_capacity(used.len());
    let mut x = MARGIN;
    for w in &widths {
        xs.push(x);
        x += w + gap;
    }
    let grid_width = x.saturating_sub(gap) + MARGIN;
    let column = |stage: Stage| used.iter().position(|s| *s == stage);

    let mut head: Vec<String> = vec![p.title.clone()];
    head.extend(p.notes.iter().map(|n| format!("note: {n}")));
    let head_width = head.iter().map(|l| text_width(chars(l))).max().unwrap_or(0) + 2 * MARGIN;
    let captions_width = p
        .rows
        .iter()
        .map(|r| text_width(chars(&r.caption)) + 2 * MARGIN + PAD)
        .max()
        .unwrap_or(0);
    let width = grid_width.max(head_width).max(captions_width);

    let mut body = String::new();
    let mut y = MARGIN;
    for (n, line) in head.iter().enumerate() {
        y += TITLE_LINE;
        let class = if n == 0 { "title" } else { "note" };
        let _ = writeln!(
            body,
            "<text class=\"{class}\" x=\"{MARGIN}\" y=\"{y}\">{}</text>",
            esc(line)
        );
    }
    y += 8;
    if p.rows.is_empty() {
        y += TITLE_LINE;
        let _ = writeln!(
            body,
            "<text class=\"note\" x=\"{MARGIN}\" y=\"{y}\">no interfaces</text>"
        );
    } else {
        y += HEADER;
        for (stage, (x, w)) in used.iter().zip(xs.iter().zip(&widths)) {
            let _ = writeln!(
                body,
                "<text class=\"stage\" x=\"{}\" y=\"{y}\" text-anchor=\"middle\">{}</text>",
                x + w / 2,
                esc(stage.title())
            );
        }
    }
    y += 6;
    for (r, row) in p.rows.iter().enumerate() {
        let lines = row.nodes.iter().map(|n| n.lines.len()).max().unwrap_or(1);
        let box_h = lines * LINE + 2 * PAD;
        let lane_h = CAPTION + box_h + PAD;
        let _ = writeln!(body, "<g class=\"row\" id=\"row-{r}\">");
        let _ = writeln!(
            body,
            "<rect class=\"lane\" x=\"{}\" y=\"{y}\" width=\"{}\" height=\"{lane_h}\" rx=\"6\"/>",
            MARGIN / 2,
            width - MARGIN
        );
        let _ = writeln!(
            body,
            "<text class=\"caption\" x=\"{MARGIN}\" y=\"{}\">{}</text>",
            y + CAPTION - 6,
            esc(&row.caption)
        );
        let top = y + CAPTION;
        let mid = top + box_h / 2;
        for node in &row.nodes {
            if let Some(c) = column(node.stage) {
                draw_node(&mut body, node, xs[c], top, widths[c], box_h);
            }
        }
        for edge in &row.edges {
            let (Some(from), Some(to)) = (row.nodes.get(edge.from), row.nodes.get(edge.to)) else {
                continue;
            };
            let (Some(a), Some(b)) = (column(from.stage), column(to.stage)) else {
                continue;
            };
            let x1 = xs[a] + widths[a];
            let x2 = xs[b].saturating_sub(2);
            let _ = writeln!(
                body,
                "<line class=\"edge\" x1=\"{x1}\" y1=\"{mid}\" x2=\"{x2}\" y2=\"{mid}\" marker-end=\"url(#arrow)\"/>"
            );
            if !edge.label.is_empty() {
                let _ = writeln!(
                    body,
                    "<text class=\"label\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                    (x1 + x2) / 2,
                    mid.saturating_sub(5),
                    esc(&cut(&edge.label))
                );
            }
        }
        body.push_str("</g>\n");
        y += lane_h + LANE_GAP;
    }
    let height = y + MARGIN;

    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"monospace\" font-size=\"12\">"
    );
    let _ = writeln!(out, "<title>{}</title>", esc(&p.title));
    out.push_str(STYLE);
    out.push_str("<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#374151\"/></marker></defs>\n");
    let _ = writeln!(
        out,
        "<rect x=\"0\" y=\"0\" width=\"{width}\" height=\"{height}\" fill=\"#ffffff\"/>"
    );
    out.push_str(&body);
    out.push_str("</svg>\n");
    out
}

const STYLE: &str = "<style>\
.title{font-size:14px;font-weight:bold;fill:#111827}\
.note{fill:#6b7280}\
.stage{font-weight:bold;fill:#374151}\
.lane{fill:#f9fafb;stroke:#e5e7eb}\
.caption{font-weight:bold;fill:#1f2937}\
.node rect{stroke:#4b5563}\
.node.missing rect{stroke-dasharray:4 3}\
.edge{stroke:#374151;stroke-width:1.5}\
.label{font-size:10px;fill:#374151}\
.head{font-weight:bold}\
</style>\n";

fn draw_node(out: &mut String, node: &Node, x: usize, y: usize, w: usize, h: usize) {
    let class = if node.missing {
        format!("node {} missing", node.kind.as_str())
    } else {
        format!("node {}", node.kind.as_str())
    };
    let _ = writeln!(out, "<g class=\"{class}\">");
    let _ = writeln!(out, "<title>{}</title>", esc(&node.lines.join("\n")));
    let _ = writeln!(
        out,
        "<rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" rx=\"6\" fill=\"{}\"/>",
        node.kind.fill()
    );
    let _ = write!(out, "<text x=\"{}\" y=\"{}\">", x + PAD, y + PAD);
    for (n, line) in node.lines.iter().enumerate() {
        let class = if n == 0 { " class=\"head\"" } else { "" };
        let _ = write!(
            out,
            "<tspan{class} x=\"{}\" dy=\"{LINE}\">{}</tspan>",
            x + PAD,
            esc(&cut(line))
        );
    }
    out.push_str("</text>\n</g>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_to_the_limit_with_an_ellipsis() {
        let line = "x".repeat(MAX_CHARS + 5);
        let c = cut(&line);
        assert_eq!(chars(&c), MAX_CHARS);
        assert!(c.ends_with('…'));
        assert_eq!(cut("short"), "short");
    }
}
