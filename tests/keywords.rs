//! Play and task keywords on local-connection hosts, with recaps compared to ansible-playbook:
//! serial, any_errors_fatal, max_fail_percentage, tags, task timeouts, and the JSON event stream.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

const DUSTSTACK: &str = env!("CARGO_BIN_EXE_duststack");

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keywords")
        .join(name)
        .display()
        .to_string()
}

fn run(program: &str, book: &str, extra: &[&str]) -> Output {
    let mut c = Command::new(program);
    if program == DUSTSTACK {
        c.arg("play");
    }
    c.arg(fixture(book))
        .arg("-i")
        .arg(fixture("inventory.ini"))
        .args(extra);
    c.env("ANSIBLE_NOCOLOR", "1").output().expect("run")
}

/// host → [ok, changed, unreachable, failed, skipped, rescued, ignored]
fn recap(out: &Output) -> BTreeMap<String, Vec<u32>> {
    let text = String::from_utf8_lossy(&out.stdout);
    let tail = text.split("PLAY RECAP").nth(1).unwrap_or("");
    tail.lines()
        .filter_map(|l| l.split_once(" : "))
        .map(|(h, c)| {
            let nums = c
                .split_whitespace()
                .filter_map(|kv| kv.split_once('=')?.1.parse().ok())
                .collect();
            (h.trim().to_owned(), nums)
        })
        .collect()
}

fn same_as_ansible(book: &str, extra: &[&str]) -> Output {
    let ours = run(DUSTSTACK, book, extra);
    let theirs = run("ansible-playbook", book, extra);
    assert_eq!(
        recap(&ours),
        recap(&theirs),
        "{book}: recap differs from ansible-playbook\n--- duststack:\n{}\n--- ansible:\n{}",
        String::from_utf8_lossy(&ours.stdout),
        String::from_utf8_lossy(&theirs.stdout)
    );
    assert_eq!(
        ours.status.code(),
        theirs.status.code(),
        "{book}: exit codes differ"
    );
    assert!(!recap(&ours).is_empty(), "{book}: no recap");
    ours
}

#[test]
fn serial_runs_batches_in_order() {
    same_as_ansible("serial.yml", &[]);
    let out = run(DUSTSTACK, "serial.yml", &["--json"]);
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("every --json line is JSON"))
        .collect();
    let order: Vec<String> = events
        .iter()
        .filter_map(|e| match e["event"].as_str()? {
            "task_start" => Some(format!("T:{}", e["task"].as_str()?)),
            "host_result" => Some(e["host"].as_str()?.to_owned()),
            _ => None,
        })
        .collect();
    let batch = |o: &[String]| {
        o.iter()
            .filter(|x| !x.starts_with("T:"))
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(order.len(), 12, "{order:?}");
    assert_eq!(order[0], "T:first");
    assert_eq!(
        batch(&order[0..6]),
        ["h1", "h2"].iter().map(|s| s.to_string()).collect()
    );
    assert_eq!(
        batch(&order[6..12]),
        ["h3", "h4"].iter().map(|s| s.to_string()).collect()
    );
}

#[test]
fn any_errors_fatal_stops_every_host() {
    let out = same_as_ansible("any_errors_fatal.yml", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(recap(&out)["h1"][0], 0, "no task after the failure may run");
}

#[test]
fn max_fail_percentage_stops_the_play() {
    let out = same_as_ansible("max_fail.yml", &[]);
    assert_eq!(recap(&out)["h3"][0], 0, "the second task must not run");
}

#[test]
fn tags_select_tasks() {
    let out = same_as_ansible("tags.yml", &["--tags", "a"]);
    assert_eq!(recap(&out)["h1"][0], 2, "tagged a + always");
    let out = same_as_ansible("tags.yml", &["--skip-tags", "b"]);
    assert_eq!(recap(&out)["h1"][0], 3, "a, always, untagged");
    let out = same_as_ansible("tags.yml", &["--tags", "c"]);
    assert_eq!(recap(&out)["h1"][0], 2, "c (never overridden) + always");
}

#[test]
fn task_timeout_fails_the_task() {
    let start = Instant::now();
    let out = run(DUSTSTACK, "timeout.yml", &[]);
    assert!(
        start.elapsed().as_secs() < 4,
        "the timeout did not cut the task short"
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("exceeded its timeout"));
    assert_eq!(recap(&out)["h1"][3], 1);
}

#[test]
fn a_failed_host_sits_out_later_plays() {
    let out = same_as_ansible("two_plays.yml", &[]);
    let r = recap(&out);
    assert_eq!(r["h2"][0..4], [0, 0, 0, 1]);
    assert_eq!(r["h1"][0..5], [1, 1, 0, 0, 1]);
}

#[test]
fn other_hosts_reached_through_inventory_vars() {
    let out = same_as_ansible("peer_from_inventory.yml", &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(recap(&out)["h4"][0..4], [1, 0, 0, 0]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"peer=h1\""));
}

#[test]
fn a_loop_that_cannot_be_templated_is_skipped_when_the_condition_is_false() {
    let out = same_as_ansible("loop_over_skipped.yml", &[]);
    assert_eq!(out.status.code(), Some(0));
    // ok, changed, unreachable, failed, skipped, rescued, ignored (an ignored failure is also ok)
    let r = recap(&out);
    assert_eq!(r["h1"], [1, 0, 0, 0, 2, 0, 1], "{r:?}");
}
