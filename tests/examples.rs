//! Every example runs in quick mode (`LAB_QUICK=1`), exits successfully, and its RESULT lines
//! parse. What each chapter claims about those numbers is asserted by the chapter's own tests;
//! this one makes sure no example in the book has rotted. Outputs are kept in
//! `target/example-runs/` for inspection.

use std::path::Path;

/// Exercise starters stop at `todo!()` by design: they compile, but are not run.
fn is_runnable(name: &str) -> bool {
    !name.ends_with("_exercise")
}

fn example_names() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|entry| {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "rs") {
                Some(path.file_stem()?.to_str()?.to_string())
            } else if path.join("main.rs").exists() {
                Some(path.file_name()?.to_str()?.to_string())
            } else {
                None
            }
        })
        .filter(|name| is_runnable(name))
        .collect();
    names.sort();
    names
}

#[test]
fn every_example_runs_in_quick_mode_and_prints_valid_results() {
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/example-runs");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut failures = Vec::new();
    let names = example_names();
    assert!(!names.is_empty());
    for name in &names {
        let started = std::time::Instant::now();
        let run = lab::example::run_with_env(name, &[], &[("LAB_QUICK", "1")]).unwrap();
        let log = format!("--- stdout\n{}\n--- stderr\n{}", run.stdout(), run.stderr());
        std::fs::write(out_dir.join(format!("{name}.txt")), &log).unwrap();
        match run.results() {
            Ok(results) => println!(
                "{name}: ok, {} RESULT lines, {:.1?}",
                results.len(),
                started.elapsed()
            ),
            Err(error) => failures.push(format!("{name}: {error:#}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
