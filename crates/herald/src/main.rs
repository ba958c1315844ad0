//! `herald serve` and `herald check`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// The system allocator on purpose: mimalloc was tried and kept 130–240 MiB of freed memory
// resident after a burst of requests (and its page purging caused 100 ms stalls); with glibc's
// allocator the server stays at ~70 MiB with 1M pending jobs and is as fast (docs/benchmarks.md).
use herald::{Settings, format_diagnostics, launch_project, load_checked_project};

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "Event-driven conversations: pushbacks, scheduled jobs, notifications"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ProjectArg {
    /// Project directory (bots/, workflows/, integrations/, herald.toml).
    #[arg(long, env = "HERALD_PROJECT", default_value = ".")]
    project: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server. Settings come from defaults, PROJECT/herald.toml, HERALD_* variables and these flags.
    #[command(
        after_help = "More settings (herald.toml keys, or HERALD_<KEY> variables): body_limit, \
header_timeout_secs, body_timeout_secs, max_connections, \
pushback_rate_limit, pushback_rate_burst, script_timeout_ms, script_memory_mb, script_max_replies, \
script_max_reply_bytes, script_max_host_calls, script_max_state_bytes, script_max_log_lines, http_allow_link_local, \
http_timeout_ms, workers, runtime_threads, sqlite_synchronous (full|normal), log, log_format (text|json), shutdown_timeout_secs, api_keys, [smtp]. \
See docs/configuration.md."
    )]
    Serve {
        #[command(flatten)]
        project: ProjectArg,
        /// Address to listen on [env: HERALD_LISTEN] [default: 127.0.0.1:8080]
        #[arg(long)]
        listen: Option<String>,
        /// Base URL for links Herald hands out [env: HERALD_PUBLIC_URL] [default: http://{listen}]
        #[arg(long)]
        public_url: Option<String>,
        /// Data directory [env: HERALD_DATA_DIR] [default: ./herald-data]
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// sqlite://PATH [env: HERALD_DATABASE_URL] [default: sqlite://{data_dir}/herald.db]
        #[arg(long)]
        database_url: Option<String>,
        /// Admin token [env: HERALD_ADMIN_TOKEN] [default: generated into {data_dir}/admin-token]
        #[arg(long, hide_env_values = true)]
        admin_token: Option<String>,
    },
    /// Validate every definition file; print errors with file, line and a hint; exit 1 on any.
    Check {
        #[command(flatten)]
        project: ProjectArg,
    },
}

fn init_logs(s: &Settings) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(&s.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if s.log_format.eq_ignore_ascii_case("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { project } => match load_checked_project(&project.project) {
            Ok(p) => {
                let count =
                    |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
                let mut parts = vec![count(p.bots.len(), "bot")];
                if !p.workflows.is_empty() {
                    parts.push(count(p.workflows.len(), "workflow"));
                }
                if !p.integrations.is_empty() {
                    parts.push(count(p.integrations.len(), "integration"));
                }
                println!("{}: ok ({})", project.project.display(), parts.join(", "));
                ExitCode::SUCCESS
            }
            Err(d) => {
                eprint!("{}", format_diagnostics(&d));
                ExitCode::FAILURE
            }
        },
        Command::Serve {
            project,
            listen,
            public_url,
            data_dir,
            database_url,
            admin_token,
        } => {
            let mut settings = match Settings::load(&project.project) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("herald: {e}");
                    return ExitCode::FAILURE;
                }
            };
            settings.listen = listen.unwrap_or(settings.listen);
            settings.public_url = public_url.or(settings.public_url);
            settings.data_dir = data_dir.unwrap_or(settings.data_dir);
            settings.database_url = database_url.or(settings.database_url);
            settings.admin_token = admin_token.or(settings.admin_token);
            init_logs(&settings);
            raise_open_file_limit();
            let loaded = match load_checked_project(&project.project) {
                Ok(p) => p,
                Err(d) => {
                    eprint!("{}", format_diagnostics(&d));
                    eprintln!(
                        "herald: not starting: fix the errors above (`herald check --project {}`)",
                        project.project.display()
                    );
                    return ExitCode::FAILURE;
                }
            };
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if settings.runtime_threads > 0 {
                builder.worker_threads(settings.runtime_threads);
            }
            let rt = match builder.enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("herald: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(&settings.listen)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.listen))?;
                let running = launch_project(settings, loaded, listener).await?;
                shutdown_signal().await;
                tracing::info!("shutting down: finishing in-flight work");
                running.stop().await
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("herald: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Raises the soft limit on open files to the hard one, as Go and other servers do at start:
/// the soft default (often 1024) is meant for interactive programs, and every connection and
/// chat socket takes a file descriptor. The connection cap is derived from the limit in force.
fn raise_open_file_limit() {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
        // No more than a million: an unlimited hard limit must not become a huge soft one.
        let want = maximum.unwrap_or(1 << 20).min(1 << 20);
        if current.is_some_and(|c| c < want) {
            let raised = Rlimit {
                current: Some(want),
                maximum,
            };
            if let Err(e) = setrlimit(Resource::Nofile, raised) {
                tracing::debug!(error = %e, "cannot raise the open-file limit");
            }
        }
    }
}
