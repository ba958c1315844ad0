//! `herald-bench`: benchmark programs that start a real `herald serve` and measure it.
//!
//! Each scenario is a subcommand implemented in its own module (`pushback`, `jobs`, `hostile`, and
//! `trigger` and `broadcast` in `notify`). A scenario gets a freshly started server
//! ([`server::Server`]) with a throwaway project (`jobs` starts a fresh one per phase), drives
//! load against it, prints human-readable numbers next to the targets, and ends with one
//! machine-readable line `RESULT {json}`.
//! Timings are never asserted: the exit code only reflects whether the benchmark could run.
//!
//! The client runs on a small tokio runtime (`--client-threads`, default 1) because the server
//! usually shares the machine's cores with it.

mod client;
mod hostile;
mod ingest;
mod jobs;
mod load;
mod notify;
mod pushback;
mod server;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clap::{Args, Parser, Subcommand};

use crate::server::{Server, ServerOptions};

#[derive(Parser, Debug)]
#[command(
    name = "herald-bench",
    version,
    about = "Benchmarks for a real `herald serve` process (prints numbers, never asserts)"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// Pushback activations: accept throughput and latency, drain rate, and accept→reply latency
    /// over the chatwidget WebSocket.
    Pushback(pushback::PushbackArgs),
    /// Scheduled jobs: scheduling rate, execution rate and lateness with spread-out due times
    /// and with a backlog all due at once, and server memory with many pending jobs.
    Jobs(jobs::JobsArgs),
    /// Notification triggers to single subscribers (one in_app step): triggers/s accepted and
    /// processed, and trigger → feed entry latency.
    Trigger(notify::TriggerArgs),
    /// One broadcast to many subscribers (default 100,000) with one in_app step: time until
    /// every feed entry is committed.
    Broadcast(notify::BroadcastArgs),
    /// Healthy dialogs' reply latency alone and while hostile dialogs run scripts that loop
    /// until the script budget stops them.
    Hostile(hostile::HostileArgs),
    /// Signed GitHub-style deliveries to an integration, half of them repeats: verified
    /// deliveries/s, accept latency, one event per unique delivery, and delivery → bot reply.
    Ingest(ingest::IngestArgs),
}

/// Options every scenario takes.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// The `herald` executable [default: `herald` next to this executable].
    #[arg(long, value_name = "PATH")]
    pub herald_bin: Option<PathBuf>,
    /// Keep the temporary project, data directory and server log after exit.
    #[arg(long)]
    pub keep_data: bool,
    /// Worker threads of the client runtime (keep it small: the server shares the cores).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub client_threads: u16,
}

impl CommonArgs {
    fn server_options(&self) -> ServerOptions {
        ServerOptions {
            herald_bin: self.herald_bin.clone(),
            keep_data: self.keep_data,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let common = match &cli.scenario {
        Scenario::Pushback(a) => a.common.clone(),
        Scenario::Jobs(a) => a.common.clone(),
        Scenario::Trigger(a) => a.common.clone(),
        Scenario::Broadcast(a) => a.common.clone(),
        Scenario::Hostile(a) => a.common.clone(),
        Scenario::Ingest(a) => a.common.clone(),
    };
    // One thread: a current-thread runtime, so the pacer, the connections and the I/O driver
    // never wake each other across threads.
    let mut builder = if common.client_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(usize::from(common.client_threads));
        b
    };
    let result = builder
        .enable_all()
        .build()
        .context("building the tokio runtime")
        .and_then(|rt| {
            rt.block_on(async {
                match &cli.scenario {
                    Scenario::Pushback(args) => {
                        with_server(&common, async |server| pushback::run(args, server).await).await
                    }
                    Scenario::Jobs(args) => jobs::run(args).await,
                    Scenario::Trigger(args) => {
                        with_server(&common, async |server| {
                            notify::run_trigger(args, server).await
                        })
                        .await
                    }
                    Scenario::Broadcast(args) => {
                        with_server(&common, async |server| {
                            notify::run_broadcast(args, server).await
                        })
                        .await
                    }
                    Scenario::Hostile(args) => {
                        with_server(&common, async |server| hostile::run(args, server).await).await
                    }
                    Scenario::Ingest(args) => {
                        with_server(&common, async |server| ingest::run(args, server).await).await
                    }
                }
            })
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Starts a server, runs `scenario` against it, and stops the server afterwards, also when the
/// scenario fails or Ctrl-C arrives (the [`Server`] is dropped, which kills the process).
async fn with_server<T, F>(common: &CommonArgs, scenario: F) -> Result<T>
where
    F: AsyncFnOnce(&mut Server) -> Result<T>,
{
    let mut server = Server::start(&common.server_options()).await?;
    let result = tokio::select! {
        r = scenario(&mut server) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    if result.is_err() {
        let state = match server.check_alive() {
            Ok(()) => "still running".to_owned(),
            Err(e) => format!("{e:#}"),
        };
        server.keep_for_inspection();
        eprintln!(
            "herald-bench: server {state}; log: {}{}",
            server.log_path().display(),
            server.log_tail_block()
        );
    }
    server.stop();
    result
}

/// A command-line number that must be finite and ≥ 0.
fn non_negative(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a number >= 0")),
    }
}

/// A command-line number that must be finite and > 0.
fn positive(s: &str) -> Result<f64, String> {
    match non_negative(s) {
        Ok(v) if v > 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a number > 0")),
    }
}
