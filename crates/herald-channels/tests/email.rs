//! Email delivery against a real SMTP server: Python's aiosmtpd writing to a
//! maildir, so what lands is what a real relay would have accepted.
//!
//! Requires `pip install aiosmtpd`; without it these tests fail (on purpose:
//! a silently skipped SMTP test is an untested SMTP path).

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use herald_channels::{Attempt, EmailRequest, Mailer, SmtpConfig, SmtpTls};
use tempfile::TempDir;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A running aiosmtpd with a maildir; killed when dropped.
struct SmtpSink {
    child: Child,
    dir: TempDir,
    addr: SocketAddr,
}

impl SmtpSink {
    /// Starts the server; `max_size` limits accepted messages (bytes).
    async fn start(max_size: Option<u32>) -> Result<Self, Box<dyn std::error::Error>> {
        let probe = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        assert!(
            matches!(probe, Ok(s) if s.success()),
            "the SMTP integration tests need Python's aiosmtpd: run `pip install aiosmtpd` \
             (python3 -c 'import aiosmtpd' failed: {probe:?})"
        );

        let dir = TempDir::new()?;
        // Python's Maildir only creates its subfolders when the folder
        // itself is missing; in an existing one every delivery fails.
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir(dir.path().join(sub))?;
        }
        let addr = free_port()?;
        let log = File::create(dir.path().join("aiosmtpd.log"))?;
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "aiosmtpd", "-n", "-l", &addr.to_string()]);
        if let Some(size) = max_size {
            cmd.args(["-s", &size.to_string()]);
        }
        cmd.args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd.spawn()?;
        let mut sink = SmtpSink { child, dir, addr };
        sink.wait_until_listening().await?;
        Ok(sink)
    }

    async fn wait_until_listening(&mut self) -> Result<(), Box<dyn std::error::Error>> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                return Err(format!("aiosmtpd exited with {status}: {}", self.log()).into());
            }
            if Instant::now() > deadline {
                return Err(
                    format!("aiosmtpd not listening on {}: {}", self.addr, self.log()).into(),
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("aiosmtpd.log")).unwrap_or_default()
    }

    fn config(&self) -> SmtpConfig {
        SmtpConfig {
            host: self.addr.ip().to_string(),
            port: self.addr.port(),
            username: None,
            password: None,
            from: "Herald <herald@example.com>".to_owned(),
            tls: None,
            timeout: Duration::from_secs(10),
        }
    }

    /// The raw messages in the maildir's `new/`, oldest first.
    fn messages(&self) -> Result<Vec<String>, std::io::Error> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("new"))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        // Maildir names start with the delivery time in seconds, so this is
        // delivery order at least across seconds; tests send one at a time.
        paths.sort();
        paths.iter().map(|p| read(p)).collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        // Errors mean it already exited, which is just as good.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read(path: &Path) -> Result<String, std::io::Error> {
    Ok(String::from_utf8_lossy(&std::fs::read(path)?).into_owned())
}

fn free_port() -> Result<SocketAddr, std::io::Error> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

fn mail(to: &str, subject: &str, body: &str) -> EmailRequest {
    EmailRequest {
        to: to.to_owned(),
        subject: subject.to_owned(),
        body: body.to_owned(),
        html: None,
    }
}

/// The value of a top-level header, compared case-insensitively by name.
fn header<'a>(raw: &'a str, name: &str) -> Option<&'a str> {
    raw.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn plain_text_mail_lands_in_the_mailbox() -> TestResult {
    let sink = SmtpSink::start(None).await?;
    let cfg = sink.config();
    assert_eq!(cfg.effective_tls(), SmtpTls::None);
    let mailer = Mailer::new(cfg)?;

    let outcome = mailer
        .send(&mail(
            "Ada <ada@example.org>",
            "Your order has shipped",
            "Hello Ada,\nparcel 42 is on its way.",
        ))
        .await;
    assert_eq!(outcome, Attempt::Delivered, "server log: {}", sink.log());

    let messages = sink.messages()?;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let raw = &messages[0];
    assert_eq!(header(raw, "To"), Some("Ada <ada@example.org>"), "{raw}");
    assert_eq!(
        header(raw, "Subject"),
        Some("Your order has shipped"),
        "{raw}"
    );
    assert_eq!(
        header(raw, "From"),
        Some("Herald <herald@example.com>"),
        "{raw}"
    );
    // aiosmtpd records the envelope recipient, proving RCPT TO was right.
    assert_eq!(header(raw, "X-RcptTo"), Some("ada@example.org"), "{raw}");
    assert!(raw.contains("Hello Ada,"), "{raw}");
    assert!(raw.contains("parcel 42 is on its way."), "{raw}");
    Ok(())
}

#[tokio::test]
async fn html_mail_and_several_recipients() -> TestResult {
    let sink = SmtpSink::start(None).await?;
    let mailer = Mailer::new(sink.config())?;
    let mut msg = mail("a@example.org, b@example.org", "Digest", "plain version");
    msg.html = Some("<p>html version</p>".to_owned());

    assert_eq!(
        mailer.send(&msg).await,
        Attempt::Delivered,
        "{}",
        sink.log()
    );

    let messages = sink.messages()?;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let raw = &messages[0];
    assert_eq!(
        header(raw, "X-RcptTo"),
        Some("a@example.org, b@example.org"),
        "{raw}"
    );
    assert!(raw.contains("multipart/alternative"), "{raw}");
    assert!(raw.contains("plain version"), "{raw}");
    assert!(raw.contains("<p>html version</p>"), "{raw}");
    Ok(())
}

#[tokio::test]
async fn server_rejection_with_5xx_is_permanent() -> TestResult {
    // aiosmtpd answers "552 Too much mail data" past the size limit.
    let sink = SmtpSink::start(Some(1024)).await?;
    let mailer = Mailer::new(sink.config())?;

    let outcome = mailer
        .send(&mail("ada@example.org", "big", &"lorem ipsum ".repeat(500)))
        .await;
    match outcome {
        Attempt::Failed {
            error, permanent, ..
        } => {
            assert!(permanent, "a 5xx reply must be permanent: {error}");
            assert!(error.contains("552"), "{error}");
        }
        Attempt::Delivered => panic!("oversized mail was accepted"),
    }
    assert!(sink.messages()?.is_empty());
    Ok(())
}

#[tokio::test]
async fn unreachable_server_is_retryable() -> TestResult {
    let addr = free_port()?;
    let cfg = SmtpConfig {
        host: "127.0.0.1".to_owned(),
        port: addr.port(),
        username: None,
        password: None,
        from: "herald@example.com".to_owned(),
        tls: Some(SmtpTls::None),
        timeout: Duration::from_secs(5),
    };
    let mailer = Mailer::new(cfg)?;
    match mailer.send(&mail("ada@example.org", "s", "b")).await {
        Attempt::Failed {
            error, permanent, ..
        } => assert!(!permanent, "connection refused must be retryable: {error}"),
        Attempt::Delivered => panic!("delivered to a closed port"),
    }
    Ok(())
}
