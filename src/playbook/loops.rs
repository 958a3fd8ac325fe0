//! `loop:` and `loop_control:` on a step, as Ansible writes them: the items are a YAML list, or
//! a template that renders to a list (`loop: "{{ dirs }}"`); a mapping is iterated only through
//! `dict2items`. Reading and checking them here; each item is a variable (`item`, or
//! `loop_control.loop_var`) of the step.

use serde_json::Value as J;

use super::Expr;
use crate::decode::{self, Fields};
use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::template;
use crate::yaml::{Node, Value};

const LOOP_CONTROL_KEYS: &[&str] = &["loop_var", "label"];

/// What a step loops over.
#[derive(Clone, Debug)]
pub enum LoopItems {
    /// A list written in the playbook.
    List(Vec<J>),
    /// A template (`"{{ dirs }}"`), rendered per host; it must render to a list.
    Template(String),
}

#[derive(Clone, Debug)]
pub struct Loop {
    pub items: LoopItems,
    /// Where `loop:`'s value is written: errors about the items point here.
    pub pos: Pos,
    /// The variable each item is bound to (`item` unless `loop_control.loop_var`).
    pub var: String,
    /// `loop_control.label`: what output shows for an item instead of the item itself.
    pub label: Option<Expr>,
}

/// `loop:` and `loop_control:` of a step, if it has them.
pub(super) fn read_loop(f: &Fields<'_>, diags: &mut Diagnostics) -> Option<Loop> {
    let control = f.get("loop_control");
    let Some(node) = f.get("loop") else {
        if let Some(c) = control {
            diags.push(Diagnostic::new(
                c.pos.clone(),
                "`loop_control` without `loop:`: there are no items to control",
            ));
        }
        return None;
    };
    let items = loop_items(node, diags)?;
    let (var, label) = match control {
        Some(c) => read_loop_control(c, diags)?,
        None => ("item".to_string(), None),
    };
    Some(Loop {
        items,
        pos: node.pos.clone(),
        var,
        label,
    })
}

/// The items as written: a list, or a template for one. Anything else is refused, with the
/// Ansible way for a mapping (`dict2items`).
fn loop_items(node: &Node, diags: &mut Diagnostics) -> Option<LoopItems> {
    match &node.value {
        Value::Seq(items) => Some(LoopItems::List(items.iter().map(Node::to_json).collect())),
        Value::Str(s) if s.contains("{{") => Some(LoopItems::Template(s.clone())),
        other => {
            diags.push(not_a_list(node.pos.clone(), other.kind(), &node.to_json()));
            None
        }
    }
}

/// "`loop:` takes a list", for a value of `kind` (`value` chooses the hint).
pub fn not_a_list(pos: Pos, kind: &str, value: &J) -> Diagnostic {
    let d = Diagnostic::new(
        pos,
        format!("`loop:` takes a list (or a template that renders to one), found {kind}"),
    );
    match value {
        J::Object(_) => d.with_help("to loop over a mapping write `loop: \"{{ m | dict2items }}\"`; each item has `key` and `value`"),
        J::String(_) => d.with_help("for one item write `loop: [that]`; for a variable `loop: \"{{ name }}\"`"),
        _ => d.with_help("write the items as a YAML list, e.g. `loop: [a, b]`"),
    }
}

/// `loop_control: { loop_var, label }`.
fn read_loop_control(node: &Node, diags: &mut Diagnostics) -> Option<(String, Option<Expr>)> {
    let f = Fields::new(node, "loop_control", LOOP_CONTROL_KEYS, diags)?;
    let var = match f.get("loop_var") {
        None => "item".to_string(),
        Some(n) => {
            let v = decode::string(n, "loop_var", diags)?;
            if !decode::is_identifier(&v) {
                diags.push(Diagnostic::new(
                    n.pos.clone(),
                    format!(
                        "`loop_var: {}` must be a variable name (letters, digits, `_`)",
                        crate::diag::one_line(&v)
                    ),
                ));
                return None;
            }
            if let Some(d) = decode::reserved_variable(&v, &n.pos) {
                diags.push(d);
                return None;
            }
            v
        }
    };
    let label = match f.get("label") {
        None => None,
        Some(n) => Some(Expr {
            text: decode::string(n, "label", diags)?,
            pos: n.pos.clone(),
        }),
    };
    Some((var, label))
}

/// The items of a loop on a host: the list as written, or the template rendered with the
/// host's variables; a value that is not a list is a located error.
pub fn items_for(lp: &Loop, ctx: &template::Vars) -> Result<Vec<J>, Diagnostic> {
    match &lp.items {
        // Items written with `{{ }}` are rendered, as Ansible templates the whole loop value.
        LoopItems::List(items) => {
            match template::render_json_strings(&J::Array(items.clone()), ctx, &lp.pos)? {
                J::Array(items) => Ok(items),
                other => Ok(vec![other]),
            }
        }
        LoopItems::Template(text) => match template::render_value(text, ctx, &lp.pos)? {
            J::Array(items) => Ok(items),
            // A rendered value may be a secret: only its kind is named.
            J::String(_) => Err(not_a_list(lp.pos.clone(), "text", &J::Null).with_help(
                "the template must give a list: a variable holding a YAML list, or a mapping through `| dict2items`",
            )),
            other => Err(not_a_list(lp.pos.clone(), json_kind(&other), &other)),
        },
    }
}

fn json_kind(v: &J) -> &'static str {
    match v {
        J::Null => "nothing (null)",
        J::Bool(_) => "a boolean",
        J::Number(_) => "a number",
        // A template renders a number or a word alike, as text.
        J::String(_) => "text",
        J::Object(_) => "a mapping",
        J::Array(_) => "a list",
    }
}

/// What output shows for an item: `loop_control.label` rendered with the item bound, else a
/// short rendering of the item. Masked before it is cut short, so no part of a secret shows.
pub fn item_label(lp: &Loop, ctx: &template::Vars) -> Result<String, Diagnostic> {
    let text = match &lp.label {
        Some(l) => template::render_str(&l.text, ctx, &l.pos)?,
        None => match ctx.get(&lp.var) {
            Some(J::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        },
    };
    let masked = crate::secrets::redact(&text);
    let one_line = crate::diag::one_line(&masked);
    const MAX: usize = 40;
    Ok(if one_line.chars().count() > MAX {
        format!("{}…", one_line.chars().take(MAX).collect::<String>())
    } else {
        one_line.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn looped(label: Option<&str>) -> Loop {
        Loop {
            items: LoopItems::List(vec![]),
            pos: Pos::cli("loop"),
            var: "item".into(),
            label: label.map(|t| Expr {
                text: t.into(),
                pos: Pos::cli("label"),
            }),
        }
    }

    #[test]
    fn a_label_is_masked_before_it_is_cut_short() {
        let secret = "s3cr3t-".repeat(10);
        crate::secrets::register("db_password", &secret);
        let mut ctx = template::Vars::new();
        ctx.insert("item", &json_item(&secret));
        let label = item_label(&looped(None), &ctx).unwrap();
        assert!(!label.contains("s3cr3t"), "{label}");
        assert!(label.contains("[secret:db_password]"), "{label}");
    }

    fn json_item(s: &str) -> J {
        serde_json::json!({ "user": "app", "password": s })
    }

    #[test]
    fn a_label_is_the_item_short_or_the_rendered_loop_control_label() {
        let mut ctx = template::Vars::new();
        ctx.insert("item", &"x".repeat(100));
        let label = item_label(&looped(None), &ctx).unwrap();
        assert_eq!(label, format!("{}…", "x".repeat(40)));
        ctx.insert(
            "item",
            &serde_json::json!({ "name": "logs", "mode": "0750" }),
        );
        let label = item_label(&looped(Some("{{ item.name }}")), &ctx).unwrap();
        assert_eq!(label, "logs");
    }

    #[test]
    fn a_template_that_renders_no_list_is_refused_at_the_loop() {
        let mut lp = looped(None);
        lp.items = LoopItems::Template("{{ dirs }}".into());
        let mut ctx = template::Vars::new();
        ctx.insert("dirs", &serde_json::json!(["a", "b"]));
        assert_eq!(items_for(&lp, &ctx).unwrap(), [J::from("a"), J::from("b")]);
        ctx.insert("dirs", &serde_json::json!({ "a": 1 }));
        let d = items_for(&lp, &ctx).unwrap_err();
        assert!(d.message.ends_with("found a mapping"), "{}", d.message);
        assert!(d.help.unwrap().contains("dict2items"));
        ctx.insert("dirs", &7);
        let d = items_for(&lp, &ctx).unwrap_err();
        assert!(d.message.ends_with("found text"), "{}", d.message);
        assert_eq!(d.pos, Pos::cli("loop"));
    }

    #[test]
    fn items_written_with_templates_are_rendered() {
        let mut lp = looped(None);
        lp.items = LoopItems::List(vec![
            J::from("{{ app }}-logs"),
            serde_json::json!({ "n": "{{ app }}" }),
        ]);
        let mut ctx = template::Vars::new();
        ctx.insert("app", &"wiki");
        assert_eq!(
            items_for(&lp, &ctx).unwrap(),
            [J::from("wiki-logs"), serde_json::json!({ "n": "wiki" })]
        );
    }
}
