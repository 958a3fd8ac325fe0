//! The shipped templates rendered with tera 1.20 (the engine cutover used before) and tera 2.4
//! (the one it uses now), with the lab inventory's variables for every host, N times each:
//! `cargo bench --bench templates` (from the repository root). Checks first that both engines
//! render every (host, template) pair to the same bytes.
//!
//! Three figures: tera 1's render, tera 2's render (the engines alone, same prepared
//! context), and cutover's `Templates::render` (tera 2 plus what cutover adds: the variables
//! turned into tera's context and, since the lab has secrets, the second render that finds
//! values derived from them).

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use cutover::inventory::vars::Layers;
use cutover::template::{self, Templates};
use serde_json::Value as J;

fn main() {
    let iterations: usize = std::env::var("BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let mut d = cutover::diag::Diagnostics::default();
    let inv = cutover::inventory::load(Path::new("inventory/lab.yml"), &mut d)
        .unwrap_or_else(|| panic!("inventory: {d:?}"));
    let everyone = template::resolve_all(&inv, Layers::default()).expect("variables");
    let templates = Templates::load(Path::new("templates")).expect("templates");
    let mut names: Vec<String> = templates.names().map(str::to_string).collect();
    names.sort();

    let t1 = tera1_engine(&names);
    let mut t2 = template::file_engine();
    for n in &names {
        t2.add_raw_template(
            n,
            &std::fs::read_to_string(Path::new("templates").join(n)).unwrap(),
        )
        .unwrap();
    }

    // Every (host, template) pair that renders; the same bytes from both engines.
    let mut pairs = Vec::new();
    for h in &inv.hosts {
        let vars = template::host_context(&inv, &h.name, &everyone[&h.name], &everyone);
        let ctx1 = tera1::Context::from_serialize(vars.to_json()).unwrap();
        let ctx2 = vars.to_tera();
        for n in &names {
            let Ok(out2) = templates.render(n, &vars) else {
                continue;
            };
            let out1 = t1
                .render(n, &ctx1)
                .expect("tera 1 renders what tera 2 renders");
            assert_eq!(out1, out2, "{} on {}: tera 1 and tera 2 differ", n, h.name);
            pairs.push((n.clone(), vars.clone(), ctx1.clone(), ctx2.clone()));
        }
    }
    let bytes: usize = pairs
        .iter()
        .map(|(n, v, _, _)| templates.render(n, v).unwrap().len())
        .sum();
    println!(
        "{} (host, template) pairs, {} bytes per round, identical with tera 1 and tera 2; {iterations} rounds",
        pairs.len(),
        bytes
    );

    let time = |label: &str, f: &dyn Fn()| -> f64 {
        f(); // warm-up
        let start = Instant::now();
        for _ in 0..iterations {
            f();
        }
        let per_round = start.elapsed().as_secs_f64() / iterations as f64;
        let per_render = per_round / pairs.len() as f64 * 1e6;
        println!(
            "{label:<44} {:>8.1} µs per render  {:>8.3} ms per round",
            per_render,
            per_round * 1e3
        );
        per_render
    };
    let a = time("tera 1.20 render", &|| {
        for (n, _, c1, _) in &pairs {
            std::hint::black_box(t1.render(n, c1).unwrap());
        }
    });
    let b = time("tera 2.4 render", &|| {
        for (n, _, _, c2) in &pairs {
            std::hint::black_box(t2.render(n, c2).unwrap());
        }
    });
    let c = time("cutover Templates::render (tera 2.4)", &|| {
        for (n, v, _, _) in &pairs {
            std::hint::black_box(templates.render(n, v).unwrap());
        }
    });
    println!(
        "tera 2 / tera 1: {:.2}   cutover's render / tera 1: {:.2}",
        b / a,
        c / a
    );
}

/// tera 1 with the filters cutover registered when it used tera 1 (its src/template.rs then).
fn tera1_engine(names: &[String]) -> tera1::Tera {
    let mut t = tera1::Tera::default();
    t.autoescape_on(vec![]);
    t.register_filter("xml_escape", |v: &J, _: &HashMap<String, J>| {
        let s = v.as_str().map_or_else(|| v.to_string(), str::to_string);
        Ok(J::String(
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
                .replace('\'', "&apos;"),
        ))
    });
    t.register_filter("shell_quote", |v: &J, _: &HashMap<String, J>| {
        let s = v.as_str().map_or_else(|| v.to_string(), str::to_string);
        Ok(J::String(cutover::shell::quote(&s)))
    });
    t.register_filter("hostvar", |v: &J, args: &HashMap<String, J>| {
        let name = args.get("name").and_then(J::as_str).unwrap_or_default();
        let all = args.get("hostvars").cloned().unwrap_or(J::Null);
        let out: Vec<J> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| all.get(h.as_str()?)?.get(name).cloned())
            .collect();
        Ok(J::Array(out))
    });
    for n in names {
        t.add_raw_template(
            n,
            &std::fs::read_to_string(Path::new("templates").join(n)).unwrap(),
        )
        .unwrap();
    }
    t
}
