//! The engine end to end: a role-based playbook on network-namespace SSH hosts, run twice
//! (idempotence), in check/diff mode, against ansible-playbook, and with a host going away.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use support::TestBed;

const DUSTSTACK: &str = env!("CARGO_BIN_EXE_duststack");

fn fixture(p: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(p)
        .display()
        .to_string()
}

/// host → (ok, changed, unreachable, failed, skipped, rescued, ignored) from a PLAY RECAP.
fn recap(out: &Output) -> BTreeMap<String, Vec<u32>> {
    let text = String::from_utf8_lossy(&out.stdout);
    let mut map = BTreeMap::new();
    let mut in_recap = false;
    for line in text.lines() {
        if line.starts_with("PLAY RECAP") {
            in_recap = true;
            continue;
        }
        if !in_recap {
            continue;
        }
        let Some((host, counts)) = line.split_once(" : ") else {
            continue;
        };
        let nums = counts
            .split_whitespace()
            .filter_map(|kv| kv.split_once('=').and_then(|(_, v)| v.parse().ok()))
            .collect();
        map.insert(host.trim().to_owned(), nums);
    }
    map
}

fn show(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn duststack_play(bed: &TestBed, inventory: &Path, extra: &[&str]) -> Output {
    bed.command(DUSTSTACK)
        .args(["play", &fixture("engine/site.yml"), "-i"])
        .arg(inventory)
        .args(extra)
        .output()
        .expect("run duststack")
}

#[test]
fn role_playbook_is_idempotent_checkable_and_matches_ansible() {
    let bed = TestBed::start(10).expect("test bed");
    let fetch_dust = bed.dir().join("fetch-dust");
    let inv = bed.inventory_with_workdirs("dust").unwrap();
    let fetch_arg = format!("fetch_dir={}", fetch_dust.display());

    let first = duststack_play(&bed, &inv, &["-e", &fetch_arg]);
    assert_eq!(first.status.code(), Some(0), "{}", show(&first));
    let r1 = recap(&first);
    assert!(
        !String::from_utf8_lossy(&first.stdout).contains("secret-host"),
        "no_log leaked"
    );
    assert_eq!(r1.len(), 10, "{}", show(&first));
    for (host, c) in &r1 {
        assert!(
            c[1] > 0,
            "{host} changed nothing on the first run: {}",
            show(&first)
        );
        assert_eq!(c[3], 0, "{host} failed");
        assert_eq!(c[5], 2, "{host} should have two rescued blocks");
    }

    // Real outcomes on every host.
    for h in bed.hosts() {
        let wd = h.workdir.join("dust");
        let conf = std::fs::read_to_string(wd.join("etc/app.conf")).unwrap();
        assert!(conf.contains(&format!("name = {}", h.name)), "{conf}");
        assert!(conf.contains("replicas = 3"), "{conf}");
        assert!(
            conf.contains(&format!("greeting = HELLO FROM {}", h.name.to_uppercase())),
            "{conf}"
        );
        let settings = std::fs::read_to_string(wd.join("etc/settings.ini")).unwrap();
        assert!(
            settings.contains("port=8080") && settings.contains(&format!("name={}", h.name)),
            "{settings}"
        );
        assert_eq!(
            std::fs::read_link(wd.join("links/app.conf")).unwrap(),
            wd.join("etc/app.conf")
        );
        assert!(wd.join("data/marker").exists());
        assert_eq!(
            std::fs::read_to_string(wd.join("data/restarts.log")).unwrap(),
            "restarted\n"
        );
        let fetched = fetch_dust
            .join(&h.name)
            .join(wd.join("etc/inline.txt").strip_prefix("/").unwrap());
        assert_eq!(
            std::fs::read_to_string(fetched).unwrap(),
            format!("host={}\n", h.name)
        );
    }

    // Second run: nothing changes anywhere.
    let second = duststack_play(&bed, &inv, &["-e", &fetch_arg]);
    assert_eq!(second.status.code(), Some(0), "{}", show(&second));
    for (host, c) in recap(&second) {
        assert_eq!(
            c[1],
            0,
            "{host} changed on the second run: {}",
            show(&second)
        );
    }

    // Check + diff on a modified state: reports the change, changes nothing.
    let settings = bed.hosts()[0].workdir.join("dust/etc/settings.ini");
    let modified = std::fs::read_to_string(&settings)
        .unwrap()
        .replace("port=8080", "port=9999");
    std::fs::write(&settings, &modified).unwrap();
    let check = duststack_play(&bed, &inv, &["-e", &fetch_arg, "--check", "--diff"]);
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        text.contains("-port=9999") && text.contains("+port=8080"),
        "{}",
        show(&check)
    );
    assert_eq!(
        std::fs::read_to_string(&settings).unwrap(),
        modified,
        "check mode changed a file"
    );
    let rc = recap(&check);
    assert!(rc["host01"][1] >= 1, "{}", show(&check));
    assert_eq!(rc["host02"][1], 0, "{}", show(&check));

    // ansible-playbook on fresh workdirs gives the same per-host counts, run after run.
    let ainv = bed.inventory_with_workdirs("ansible").unwrap();
    let fetch_ans = format!("fetch_dir={}", bed.dir().join("fetch-ansible").display());
    let ansible = |_: u8| {
        bed.command("ansible-playbook")
            .args([&fixture("engine/site.yml"), "-i"])
            .arg(&ainv)
            .args(["-e", &fetch_ans, "-f", "20"])
            .env("ANSIBLE_HOST_KEY_CHECKING", "True")
            .env("ANSIBLE_PIPELINING", "True")
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_LOCAL_TEMP", bed.dir().join("ansible-tmp"))
            .output()
            .expect("ansible-playbook is installed (scripts/install-deps.sh)")
    };
    let a1 = ansible(1);
    assert_eq!(
        recap(&a1),
        r1,
        "first run differs from ansible-playbook:\n{}\n--- duststack:\n{}",
        show(&a1),
        show(&first)
    );
    let a2 = ansible(2);
    assert_eq!(
        recap(&a2),
        recap(&second),
        "second run differs from ansible-playbook:\n{}",
        show(&a2)
    );
}

#[test]
fn unreachable_host_is_dropped_and_exit_code_is_4() {
    let bed = TestBed::start(3).expect("test bed");
    let child = bed
        .command(DUSTSTACK)
        .args(["play", &fixture("engine/unreachable.yml"), "-i"])
        .arg(bed.inventory_path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    bed.kill_host("host02").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    let r = recap(&out);
    assert_eq!(
        r["host02"][2],
        1,
        "host02 should be unreachable: {}",
        show(&out)
    );
    for h in ["host01", "host03"] {
        assert_eq!(r[h][2..4], [0, 0], "{h}: {}", show(&out));
        assert_eq!(r[h][0], 4, "{h} should finish all tasks: {}", show(&out));
    }
}

/// Runs `cmd` under a pseudo-terminal (util-linux `script`), typing `input` at its prompts.
fn with_terminal(bed: &TestBed, cmd: &str, input: &str) -> Output {
    use std::io::Write;
    let mut child = bed
        .command("script")
        .args(["-qec", cmd, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs");
    // Give the prompt time to appear before typing, as a person would.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn passwords_and_key_passphrases_are_asked_on_the_terminal() {
    let bed = TestBed::start(1).expect("test bed");
    let h = &bed.hosts()[0];
    let (user, password) = bed.password_user();
    let dir = bed.dir();
    let book = dir.join("ping.yml");
    std::fs::write(
        &book,
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - ping:\n",
    )
    .unwrap();
    let common = format!(
        "ansible_ssh_common_args='-o UserKnownHostsFile={}'",
        bed.known_hosts_path().display()
    );

    // -k: password authentication for a user that has no key.
    let inv = dir.join("password.ini");
    std::fs::write(
        &inv,
        format!(
            "{} ansible_host={} ansible_user={user} {common}\n",
            h.name, h.addr
        ),
    )
    .unwrap();
    let cmd = format!(
        "HOME={} {DUSTSTACK} play {} -i {} -k",
        dir.display(),
        book.display(),
        inv.display()
    );
    let out = with_terminal(&bed, &cmd, &format!("{password}\n"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SSH password:"), "{text}");
    assert_eq!(recap(&out)[&h.name][0..4], [1, 0, 0, 0], "{text}");

    // An encrypted key: its passphrase is asked once at start.
    let key = dir.join("encrypted_key");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "s3cret phrase", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    bed.authorize_key(&std::fs::read_to_string(key.with_extension("pub")).unwrap())
        .unwrap();
    let inv = dir.join("key.ini");
    std::fs::write(
        &inv,
        format!(
            "{} ansible_host={} ansible_user=root ansible_ssh_private_key_file={} {common}\n",
            h.name,
            h.addr,
            key.display()
        ),
    )
    .unwrap();
    let cmd = format!(
        "HOME={} {DUSTSTACK} play {} -i {}",
        dir.display(),
        book.display(),
        inv.display()
    );
    let out = with_terminal(&bed, &cmd, "s3cret phrase\n");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Passphrase for"), "{text}");
    assert_eq!(recap(&out)[&h.name][0..4], [1, 0, 0, 0], "{text}");

    // Without a terminal the encrypted key is refused up front, naming it.
    let out = bed
        .command(DUSTSTACK)
        .args(["play"])
        .arg(&book)
        .arg("-i")
        .arg(&inv)
        .env("HOME", dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("encrypted_key is encrypted"));
}

#[test]
fn become_escalates_with_sudo_and_the_asked_password() {
    let bed = TestBed::start(1).expect("test bed");
    let h = &bed.hosts()[0];
    let (_, password) = bed.password_user();
    let dir = bed.dir();
    let book = dir.join("become.yml");
    std::fs::write(
        &book,
        "- hosts: all\n  gather_facts: false\n  tasks:\n\
         \x20   - command: id -u\n      register: plain\n      changed_when: false\n\
         \x20   - command: id -u\n      become: true\n      register: root\n      changed_when: false\n\
         \x20   - copy: content=\"secret\\n\" dest=/tmp/{{ inventory_hostname }}-become-test mode=0600\n      become: true\n\
         \x20   - assert:\n        that: [\"plain.stdout == '1500'\", \"root.stdout == '0'\"]\n",
    )
    .unwrap();
    let inv = dir.join("sudo.ini");
    std::fs::write(
        &inv,
        format!(
            "{} ansible_host={} ansible_user={} ansible_ssh_private_key_file={} ansible_ssh_common_args='-o UserKnownHostsFile={}'\n",
            h.name,
            h.addr,
            bed.sudo_user(),
            bed.client_key_path().display(),
            bed.known_hosts_path().display()
        ),
    )
    .unwrap();
    let target = std::path::PathBuf::from(format!("/tmp/{}-become-test", h.name));
    let _ = std::fs::remove_file(&target);
    let cmd = format!(
        "{DUSTSTACK} play {} -i {} -K",
        book.display(),
        inv.display()
    );
    let out = with_terminal(&bed, &cmd, &format!("{password}\n"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(recap(&out)[&h.name][0..4], [4, 1, 0, 0], "{text}");
    // Written as root through sudo: owned by root, content without the password line.
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&target).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o600));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "secret\n");
    let _ = std::fs::remove_file(&target);
}
