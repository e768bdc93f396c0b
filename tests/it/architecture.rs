//! The layout's rules, checked on the source: no module imports another that imports it
//! back (directly or around a circle). `rate/`'s own rule (it names no other module but
//! `fsutil`) is a unit test in `src/rate/mod.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`billing::close`) of every file under `src/`, with the `crate::` paths
/// its non-test code names.
fn modules() -> BTreeMap<String, BTreeSet<String>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("src") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut out = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).expect("under src").with_extension("");
        let mut parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts
            .last()
            .is_some_and(|l| l == "mod" || l == "lib" || l == "main")
        {
            parts.pop();
        }
        let text = std::fs::read_to_string(&f).expect("read");
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let mut refs = BTreeSet::new();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (at, _) in line.match_indices("crate::") {
                let path: String = line[at + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_' || *c == ':')
                    .collect();
                refs.insert(path.trim_end_matches(':').to_owned());
            }
        }
        out.insert(parts.join("::"), refs);
    }
    out
}

#[test]
fn no_module_imports_around_a_circle() {
    let mods = modules();
    // Each reference resolves to the longest module path it starts with.
    let resolve = |r: &str| {
        let parts: Vec<&str> = r.split("::").collect();
        (1..=parts.len())
            .rev()
            .map(|k| parts[..k].join("::"))
            .find(|c| mods.contains_key(c))
    };
    let mut edges: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (m, refs) in &mods {
        for r in refs {
            if let Some(t) = resolve(r) {
                // A module naming its own children (`billing` re-exporting `billing::close`)
                // is not an import from elsewhere.
                if t != *m && !t.starts_with(&format!("{m}::")) && !m.is_empty() {
                    edges.entry(m).or_default().insert(t);
                }
            }
        }
    }
    assert!(edges.len() > 30, "the source was read: {}", edges.len());
    // Depth-first search for a back edge; report the circle it closes.
    fn visit<'a>(
        m: &'a str,
        edges: &'a BTreeMap<&str, BTreeSet<String>>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
        circles: &mut Vec<String>,
    ) {
        if let Some(at) = stack.iter().position(|s| *s == m) {
            circles.push(format!("{} -> {m}", stack[at..].join(" -> ")));
            return;
        }
        if !done.insert(m) {
            return;
        }
        stack.push(m);
        for t in edges.get(m).into_iter().flatten() {
            visit(t, edges, stack, done, circles);
        }
        stack.pop();
    }
    let mut circles = Vec::new();
    let mut done = BTreeSet::new();
    for m in edges.keys() {
        visit(m, &edges, &mut Vec::new(), &mut done, &mut circles);
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}
