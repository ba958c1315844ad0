//! The `herald` command line as a user meets it: `herald check` accepts the newsletter example and
//! reports every error of a broken bot with `bot.yaml:<line>:` and a hint, exiting 1; `herald
//! serve` refuses the same project quickly, with the same messages, without binding its port; and
//! `herald serve --help` lists the documented settings. Errors in the job sections (`scripts:`,
//! `triggers:`) are reported the same way.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The real binary with no inherited HERALD_* settings.
fn herald(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("HERALD_") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .env("HERALD_LOG", "warn");
    cmd
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run herald")
}

/// 1-based line of the first line of `yaml` containing `needle`.
fn line_of(yaml: &str, needle: &str) -> usize {
    yaml.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` not in the yaml"))
        + 1
}

/// Asserts that `stderr` has a diagnostic `bot.yaml:<line>:` mentioning `about`, followed by a hint.
fn assert_reported(stderr: &str, line: usize, about: &str) {
    let lines: Vec<&str> = stderr.lines().collect();
    let at = format!("bot.yaml:{line}:");
    let found = lines
        .iter()
        .position(|l| l.contains(&at) && l.contains(about))
        .unwrap_or_else(|| panic!("no error at `{at}` about `{about}` in:\n{stderr}"));
    assert!(
        lines
            .get(found + 1)
            .is_some_and(|l| l.trim_start().starts_with("hint:")),
        "the error at `{at}` has no `hint:` line after it:\n{stderr}"
    );
}

/// One error of each kind, each on a line of its own.
const BROKEN: &str = r#"name: Broken
channels:
  chatwidget: {}
states:
  Start:
    q!: hi
    go: Nowhere
  Wrong:
    q: {a: 1}
    a: hello
  Scripted:
    event!: scripted
    script: |
      var a = 1;
      var x = ;
  Reserved:
    event!: reserve
    script: |
      var p = $pushgate.createPushback($request.channelType, $request.botId, $request.chatId, "noMatch", {});
"#;

fn assert_broken_reported(stderr: &str) {
    assert_reported(stderr, line_of(BROKEN, "go: Nowhere"), "Nowhere");
    assert_reported(stderr, line_of(BROKEN, "q: {a: 1}"), "`q`");
    assert_reported(stderr, line_of(BROKEN, "var x = ;"), "JavaScript");
    assert_reported(stderr, line_of(BROKEN, "\"noMatch\""), "noMatch");
}

#[test]
fn check_accepts_the_newsletter_example() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(herald(dir.path())
        .arg("check")
        .arg("--project")
        .arg(common::examples_dir("newsletter")));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("ok"),
        "no `ok` in stdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

#[test]
fn check_reports_every_error_of_a_broken_bot_with_its_line_and_a_hint() {
    let project = common::project_with_bot("broken", BROKEN);
    let out = run(herald(project.path())
        .arg("check")
        .arg("--project")
        .arg(project.path()));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert_broken_reported(&stderr);
}

#[test]
fn serve_refuses_a_broken_project_quickly_with_the_same_messages_and_never_binds_its_port() {
    let project = common::project_with_bot("broken", BROKEN);
    let data = tempfile::tempdir().expect("tempdir");
    let check = run(herald(project.path())
        .arg("check")
        .arg("--project")
        .arg(project.path()));
    let diagnostics = text(&check.stderr);
    assert!(!diagnostics.is_empty(), "check printed nothing");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut child = herald(project.path())
        .arg("serve")
        .arg("--project")
        .arg(project.path())
        .env("HERALD_LISTEN", format!("127.0.0.1:{port}"))
        .env("HERALD_DATA_DIR", data.path())
        .env("HERALD_ADMIN_TOKEN", common::ADMIN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn herald serve");
    let started = Instant::now();
    let mut bound = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        bound |= std::net::TcpStream::connect_timeout(
            &([127, 0, 0, 1], port).into(),
            Duration::from_millis(50),
        )
        .is_ok();
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("herald serve still running 10 s after starting on a broken project");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().expect("output");
    let stderr = text(&out.stderr);
    assert!(
        !status.success(),
        "serve exited successfully on a broken project; stderr:\n{stderr}"
    );
    assert!(
        !bound,
        "serve accepted connections on {port} although the project is broken"
    );
    assert!(
        stderr.contains(diagnostics.trim_end()),
        "serve did not print check's messages.\ncheck:\n{diagnostics}\nserve:\n{stderr}"
    );
    assert_broken_reported(&stderr);
}

/// `scripts:` naming a state that does not exist, and `triggers:` using one id twice.
const BROKEN_JOBS: &str = r#"name: Jobs
channels:
  chatwidget: {}
scripts:
  remind:
    id: 1
    state: /Remindr
triggers:
  first:
    id: 2
    script: first()
  second:
    id: 2 # used twice
    script: second()
states:
  Reminder:
    a: Don't forget!
"#;

#[test]
fn check_reports_a_broken_scripts_and_triggers_section_with_lines_and_hints() {
    let project = common::project_with_bot("jobs", BROKEN_JOBS);
    let out = run(herald(project.path())
        .arg("check")
        .arg("--project")
        .arg(project.path()));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert_reported(&stderr, line_of(BROKEN_JOBS, "state: /Remindr"), "/Remindr");
    assert_reported(
        &stderr,
        line_of(BROKEN_JOBS, "# used twice"),
        "already used by trigger `first`",
    );
}

#[test]
fn an_unset_environment_variable_is_reported_with_its_line() {
    let yaml = "name: Env\nchannels:\n  chatwidget: {}\ninjector:\n  url: ${MISSING_VAR}\nstates:\n  Start:\n    q!: hi\n    a: hello\n";
    let project = common::project_with_bot("env", yaml);
    let out = run(herald(project.path())
        .env_remove("MISSING_VAR")
        .arg("check")
        .arg("--project")
        .arg(project.path()));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert_reported(&stderr, line_of(yaml, "${MISSING_VAR}"), "MISSING_VAR");
}

#[test]
fn serve_help_lists_the_documented_environment_variables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(herald(dir.path()).arg("serve").arg("--help"));
    let help = text(&out.stdout);
    assert!(
        out.status.success(),
        "serve --help failed: {}",
        text(&out.stderr)
    );
    let missing: Vec<&str> = [
        "HERALD_LISTEN",
        "HERALD_PUBLIC_URL",
        "HERALD_DATA_DIR",
        "HERALD_DATABASE_URL",
        "HERALD_ADMIN_TOKEN",
        "HERALD_PROJECT",
    ]
    .into_iter()
    .filter(|v| !help.contains(v))
    .collect();
    assert!(
        missing.is_empty(),
        "serve --help does not mention {missing:?}:\n{help}"
    );
}

/// An integration with one mistake of each kind.
const BROKEN_INTEGRATION: &str = r#"secret: ""
verify:
  scheme: githib
events:
  a:
    payload: {x: "/a~2"}
    route: {bot: nobody, contact: /customer/id}
  b:
    schema: {type: 12}
    route: {bot: shop, contact: /id}
  noMatch:
    route: {bot: shop, contact: /id}
handler: broken.js
"#;

/// `herald check` reports every integration mistake with its file, line and a hint: an unknown
/// scheme, an invalid JSON pointer, an unknown bot, an invalid JSON Schema, a reserved event
/// name, a JavaScript syntax error in the handler; a missing secret fails closed.
#[test]
fn check_reports_integration_errors_with_file_and_line() {
    let dir = common::project_with_bot("shop", "states:\n  A:\n    q: hi\n    a: hello\n");
    let integrations = dir.path().join("integrations");
    std::fs::create_dir_all(&integrations).expect("mkdir");
    std::fs::write(integrations.join("bad.yaml"), BROKEN_INTEGRATION).expect("write");
    std::fs::write(integrations.join("broken.js"), "return [;\n").expect("write");
    std::fs::write(
        integrations.join("nosecret.yaml"),
        "verify: {scheme: stripe}\nevents:\n  paid:\n    route: {bot: shop, contact: /id}\n",
    )
    .expect("write");
    let out = run(herald(dir.path()).arg("check").arg("--project").arg("."));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for (file, line, about) in [
        (
            "bad.yaml",
            line_of(BROKEN_INTEGRATION, "githib"),
            "unknown verification scheme",
        ),
        (
            "bad.yaml",
            line_of(BROKEN_INTEGRATION, "a~2"),
            "not a JSON pointer",
        ),
        (
            "bad.yaml",
            line_of(BROKEN_INTEGRATION, "nobody"),
            "unknown bot `nobody`",
        ),
        (
            "bad.yaml",
            line_of(BROKEN_INTEGRATION, "type: 12"),
            "not a valid JSON Schema",
        ),
        (
            "bad.yaml",
            line_of(BROKEN_INTEGRATION, "noMatch"),
            "reserved",
        ),
        ("broken.js", 1, "JavaScript"),
        ("nosecret.yaml", 1, "needs a secret"),
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(&format!("{file}:{line}:")) && l.contains(about)),
            "no error at `{file}:{line}:` about `{about}` in:\n{stderr}"
        );
    }
    // The server refuses the same project.
    let out = run(herald(dir.path())
        .arg("serve")
        .arg("--project")
        .arg(".")
        .env("HERALD_LISTEN", "127.0.0.1:0"));
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("unknown verification scheme"));
}
