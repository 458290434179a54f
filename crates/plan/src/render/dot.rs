//! The plan's wiring as a graphviz DOT graph (`netbind plan --output dot | dot -Tpng`).
//!
//! How it works: the [`Picture`] of the plan becomes one `digraph`, left to right; each
//! row (interface) is a `cluster_N` subgraph labelled with its caption, each node a
//! rounded box coloured by its kind (dashed when missing from the pod). Nodes are
//! named `iRnC` (row, column), so names never depend on labels. An edge that skips empty
//! stages gets `minlen` equal to the columns it spans, so graphviz puts every stage of
//! every row at the same rank and the rows line up like the SVG's grid. Rows are written
//! last first, so graphviz stacks them in plan order.
//!
//! Every label is a double-quoted DOT string: `\` and `"` are escaped, control
//! characters dropped, and lines joined with `\n` (graphviz's own line break), so no
//! label can end the string or inject an attribute.

use std::fmt::Write;

use super::picture::{Picture, picture};
use crate::model::NetworkPlan;

pub fn render(plan: &NetworkPlan) -> String {
    draw(&picture(plan))
}

pub fn draw(p: &Picture) -> String {
    let mut out = String::from("digraph netbind {\n");
    let mut title = vec![p.title.clone()];
    title.extend(p.notes.iter().map(|n| format!("note: {n}")));
    let _ = writeln!(
        out,
        "  graph [rankdir=LR, labelloc=t, labeljust=l, fontname=\"monospace\", nodesep=0.25, ranksep=0.4, label={}];",
        quote(&title)
    );
    out.push_str(
        "  node [shape=box, style=\"rounded,filled\", fontname=\"monospace\", fontsize=10];\n",
    );
    out.push_str("  edge [fontname=\"monospace\", fontsize=9];\n");
    // dot lays a left-to-right graph out top to bottom and turns it, which puts the
    // first cluster it reads at the bottom: rows are written last first to come out in
    // plan order, top to bottom.
    for (r, row) in p.rows.iter().enumerate().rev() {
        let _ = writeln!(out, "  subgraph cluster_{r} {{");
        let _ = writeln!(
            out,
            "    label={}; style=rounded; color=\"#9ca3af\";",
            quote(std::slice::from_ref(&row.caption))
        );
        for node in &row.nodes {
            let style = if node.missing {
                ", style=\"rounded,filled,dashed\""
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "    i{r}n{} [label={}, fillcolor=\"{}\"{style}];",
                node.stage.column(),
                quote(&node.lines),
                node.kind.fill()
            );
        }
        out.push_str("  }\n");
        for edge in &row.edges {
            let (Some(from), Some(to)) = (row.nodes.get(edge.from), row.nodes.get(edge.to)) else {
                continue;
            };
            let span = to.stage.column().saturating_sub(from.stage.column()).max(1);
            let _ = writeln!(
                out,
                "  i{r}n{} -> i{r}n{} [label={}, minlen={span}];",
                from.stage.column(),
                to.stage.column(),
                quote(std::slice::from_ref(&edge.label))
            );
        }
    }
    out.push_str("}\n");
    out
}

/// A DOT string of the lines, joined by graphviz's `\n`.
fn quote(lines: &[String]) -> String {
    let mut out = String::from("\"");
    for (n, line) in lines.iter().enumerate() {
        if n > 0 {
            out.push_str("\\n");
        }
        for c in line.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' | '\r' | '\t' => out.push(' '),
                c if c.is_control() => {}
                c => out.push(c),
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_backslashes_stay_inside_the_string() {
        assert_eq!(
            quote(&["a\"b\\n".into(), "c\nd".into()]),
            r#""a\"b\\n\nc d""#
        );
    }
}
