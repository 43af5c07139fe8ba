//! The new-site benchmark (`benches/newsite/newsite.py`) end to end on the two toy sites: it
//! trains without each, scores it with no domain, calibrates on its train rows and prints the
//! table. (The real run over the nine data sets is a benchmark, not a test.)

use std::process::Command;

#[test]
fn the_new_site_benchmark_runs_end_to_end_on_toy_sites() {
    let work = tempfile::tempdir().expect("temp dir");
    let table = work.path().join("table.json");
    let out = Command::new("python3")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "benches/newsite/newsite.py",
            "--config",
            "tests/fixtures/newsite.toml",
        ])
        .args([
            "--sizes",
            "30,48",
            "--traffic",
            "40",
            "--no-peers",
            "--exe",
            env!("CARGO_BIN_EXE_moderato"),
        ])
        .arg("--work")
        .arg(work.path())
        .arg("--json")
        .arg(&table)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("0 labels"), "{stdout}");
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&table).expect("the JSON table"))
            .expect("JSON");
    let tasks: Vec<&str> = rows
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["task"].as_str())
        .collect();
    assert_eq!(tasks, ["toy/label", "toysite/label"]);
    for r in rows.as_array().into_iter().flatten() {
        for col in ["zero_label", "traffic", "calibrated_30", "calibrated_48"] {
            let v = r[col].as_f64().unwrap_or(-1.0);
            assert!((0.0..=1.0).contains(&v), "{col} of {}: {v}", r["task"]);
        }
    }
}
