//! Bad input: every malformed playbook, template or inventory names file:line:col, exits
//! non-zero, and nothing runs (the first task of each fixture would write a marker file).

use std::path::{Path, PathBuf};
use std::process::Output;

const DUSTSTACK: &str = env!("CARGO_BIN_EXE_duststack");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/errors")
        .join(name)
}

fn play(book: &str, inventory: &str, marker: &Path) -> Output {
    std::process::Command::new(DUSTSTACK)
        .arg("play")
        .arg(fixture(book))
        .arg("-i")
        .arg(fixture(inventory))
        .arg("-e")
        .arg(format!("marker={}", marker.display()))
        .output()
        .unwrap()
}

fn assert_error(book: &str, inventory: &str, location: &str, words: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("marker");
    let out = play(book, inventory, &marker);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{book}: {err}");
    assert!(
        err.contains(location),
        "{book}: expected {location} in:\n{err}"
    );
    for w in words {
        assert!(err.contains(w), "{book}: expected '{w}' in:\n{err}");
    }
    assert!(
        !marker.exists(),
        "{book}: a task ran although the input was bad"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("TASK ["),
        "{book}: tasks were started"
    );
}

#[test]
fn good_fixture_runs_and_writes_the_marker() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("marker");
    let out = play("ok_marker.yml", "inventory.ini", &marker);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "marker");
}

#[test]
fn yaml_syntax_error_names_file_line_col() {
    assert_error("bad_yaml.yml", "inventory.ini", "bad_yaml.yml:8:", &[]);
}

#[test]
fn unknown_module_suggests_the_closest() {
    assert_error(
        "unknown_module.yml",
        "inventory.ini",
        "unknown_module.yml:10:7",
        &["copyy", "Did you mean 'copy'"],
    );
}

#[test]
fn unknown_parameter_suggests_the_closest() {
    assert_error(
        "bad_param.yml",
        "inventory.ini",
        "bad_param.yml:12:9",
        &["contnet", "content"],
    );
}

#[test]
fn template_syntax_error_is_found_before_running() {
    assert_error(
        "bad_template.yml",
        "inventory.ini",
        "bad_template.yml:11:",
        &["template"],
    );
}

#[test]
fn unknown_play_keyword() {
    assert_error(
        "bad_play_key.yml",
        "inventory.ini",
        "bad_play_key.yml:2:3",
        &["hostz", "hosts"],
    );
}

#[test]
fn malformed_inventory_names_file_line_col() {
    assert_error(
        "ok_marker.yml",
        "bad_inventory.ini",
        "bad_inventory.ini:4:",
        &[],
    );
}
