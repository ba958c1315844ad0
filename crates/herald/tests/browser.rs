//! The chat widget in a real browser: `tests/browser/chat.e2e.mjs` drives headless Chromium through
//! the newsletter story (say hi, click Yes, close the tab), this test activates the pushback the
//! bot handed to the subscribe service while the tab is closed, and the script checks that the offer
//! arrives on reconnect with the transcript intact. Needs node and Chromium (`apt-get install
//! chromium`, or `CHROMIUM=/path`); `HERALD_SKIP_BROWSER=1` turns their absence into a skip.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser")
}

fn runs(program: &str, arg: &str) -> bool {
    std::process::Command::new(program)
        .arg(arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Node, Chromium and `node_modules`, or `None` when the test is skipped.
fn prerequisites() -> Option<PathBuf> {
    let chromium =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    let mut missing = Vec::new();
    if !runs("node", "--version") {
        missing.push("node (apt-get install nodejs)".to_owned());
    }
    if !chromium.is_file() {
        missing.push(format!(
            "Chromium at {} (apt-get install chromium, or set CHROMIUM)",
            chromium.display()
        ));
    }
    if !missing.is_empty() {
        if std::env::var("HERALD_SKIP_BROWSER").is_ok_and(|v| v == "1") {
            eprintln!(
                "!!!!!!!! SKIPPED the browser test (HERALD_SKIP_BROWSER=1): missing {}",
                missing.join(", ")
            );
            return None;
        }
        panic!(
            "the browser test needs {}; install it (CI does), or set HERALD_SKIP_BROWSER=1 to skip",
            missing.join(" and ")
        );
    }
    let dir = browser_dir();
    if !dir.join("node_modules/playwright-core").is_dir() {
        assert!(
            runs("npm", "--version"),
            "tests/browser/node_modules is missing and npm is not installed: install npm, or run `npm ci` in {}",
            dir.display()
        );
        let out = std::process::Command::new("npm")
            .arg("ci")
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .expect("run npm ci");
        assert!(
            out.status.success(),
            "`npm ci` in {} failed:\n{}\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Some(chromium)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_page_runs_the_newsletter_story_in_headless_chromium() {
    let Some(chromium) = prerequisites() else {
        return;
    };
    let (server, sink, _project, _data) = common::newsletter().await;
    let shots = tempfile::tempdir().expect("tempdir");

    let mut child = Command::new("node")
        .arg("chat.e2e.mjs")
        .arg(&server.base)
        .arg("newsletter")
        .current_dir(browser_dir())
        .env("CHROMIUM", &chromium)
        .env("SCREENSHOT_DIR", shots.path())
        .env("E2E_TIMEOUT_MS", "80000")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn node chat.e2e.mjs");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut stderr = child.stderr.take().expect("stderr");
    let stderr_task = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });

    let story = async {
        let mut out = Vec::new();
        let chat_id = loop {
            let Some(line) = stdout
                .next_line()
                .await
                .map_err(|e| format!("reading stdout: {e}"))?
            else {
                return Err(format!(
                    "the script ended without printing CHAT_ID=; stdout: {out:?}"
                ));
            };
            out.push(line.clone());
            if let Some(id) = line.strip_prefix("CHAT_ID=") {
                break id.trim().to_owned();
            }
        };

        // The bot posted the pushback link to the subscribe service; activate it with the tab closed.
        let got = sink.wait_for(1).await;
        let link = got[0]["link"]
            .as_str()
            .ok_or_else(|| format!("the subscribe service got {got:?}, no link"))?
            .to_owned();
        let id = link.rsplit("/push_").next().unwrap_or_default();
        let (s, v) = server.get(&format!("/api/v1/pushbacks/{id}")).await;
        if s != 200 || v["chatId"] != chat_id.as_str() || v["event"] != "newNotification" {
            return Err(format!(
                "pushback {link} should be newNotification for chat {chat_id}, got {s} {v}"
            ));
        }
        let r = server
            .http
            .post(&link)
            .json(&json!({"text": "20% off"}))
            .send()
            .await
            .map_err(|e| format!("POST {link}: {e}"))?;
        let (s, v) = common::status_json(r).await;
        if s != 200 {
            return Err(format!("activating {link} answered {s} {v}"));
        }
        server.settle().await;
        stdin
            .write_all(b"continue\n")
            .await
            .map_err(|e| format!("writing to the script's stdin: {e}"))?;
        stdin
            .flush()
            .await
            .map_err(|e| format!("writing to the script's stdin: {e}"))?;

        while let Some(line) = stdout
            .next_line()
            .await
            .map_err(|e| format!("reading stdout: {e}"))?
        {
            out.push(line);
        }
        let status = child
            .wait()
            .await
            .map_err(|e| format!("waiting for node: {e}"))?;
        Ok::<_, String>((status, out))
    };
    let result = tokio::time::timeout(Duration::from_secs(90), story).await;
    if result.is_err() {
        let _ = child.start_kill();
    }
    let _ = child.wait().await;
    let stderr_text = tokio::time::timeout(Duration::from_secs(10), stderr_task)
        .await
        .map(|r| r.unwrap_or_default())
        .unwrap_or_else(|_| "(stderr not closed)".into());
    match result {
        Err(_) => {
            panic!("the browser story did not finish within 90 s; script stderr:\n{stderr_text}")
        }
        Ok(Err(e)) => panic!("{e}; script stderr:\n{stderr_text}"),
        Ok(Ok((status, out))) => {
            assert!(
                status.success() && out.iter().any(|l| l == "E2E_OK"),
                "chat.e2e.mjs exited with {status}, stdout {out:?}; stderr:\n{stderr_text}"
            );
        }
    }
}
