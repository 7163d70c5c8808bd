//! `coi-sidecar` command line: run the daemon, check a config, handle dead
//! letters, show the status. Startup errors are reported with `anyhow` here and nowhere else.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use coi_sidecar::config::{Config, DEFAULT_CONFIG_PATH};
use coi_sidecar::delivery::http::origin;
use coi_sidecar::push::vapid::VapidKeys;
use coi_sidecar::queue::dead_letters::Selection;
use coi_sidecar::{admin, app, fleet, logging, status};

/// Chat over IMAP sidecar: durable event queue, signed webhooks, metrics.
#[derive(Parser)]
#[command(name = "coi-sidecar", version, about)]
struct Cli {
    /// Configuration file.
    #[arg(long, global = true, default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Fleet mode: send what the backends published to the JetStream
    /// stream (`[jetstream]`; docs/fleet.md). No spool, no socket.
    Dispatch,
    /// Validate the configuration file and exit (0 = valid).
    CheckConfig,
    /// Show whether the daemon runs, the queue, each endpoint's health and the spool lag.
    ///
    /// Reads the queue database (read-only) and asks /healthz; changes
    /// nothing, so it is safe as root and while the daemon runs. Exit
    /// status: 0 running and healthy, 3 not running, 4 running but
    /// unhealthy (or /healthz does not answer), 1 the queue could not be
    /// read.
    Status {
        /// One JSON object instead of text, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Inspect or replay deliveries that were given up.
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
    },
}

#[derive(Subcommand)]
enum DeadLetterAction {
    /// List dead letters.
    List {
        /// Fleet mode: the dead-letter stream (every dispatcher's copies)
        /// instead of this process's database.
        #[arg(long)]
        stream: bool,
    },
    /// Move dead letters back to pending (works while the daemon runs).
    Replay {
        /// Replay every dead letter.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// Fleet mode: replay copies from the dead-letter stream (ids are
        /// stream sequences or event ids) through the event stream.
        #[arg(long)]
        stream: bool,
        /// Dead-letter ids or event ids.
        #[arg(required_unless_present = "all")]
        ids: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("coi-sidecar: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    Config::load(path).with_context(|| "invalid configuration")
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => {
            let config = load(&cli.config)?;
            for w in &config.warnings {
                println!("warning: {w}");
            }
            println!(
                "{}: ok ({} webhook endpoint(s))",
                cli.config.display(),
                config.webhooks.len()
            );
            print!("{}", describe_push(&config)?);
            let f = &config.fleet;
            match f.engine {
                fleet::settings::Engine::Sqlite => println!("queue: local SQLite in {}", config.state_dir.display()),
                fleet::settings::Engine::JetStream => println!(
                    "queue: JetStream stream {} (replicas {}) on {}; dispatchers use consumer {}",
                    f.stream,
                    f.replicas,
                    f.servers.join(", "),
                    f.consumer
                ),
            }
            // Also with engine = "sqlite": a dispatcher's config reads [jetstream] too.
            if f.engine == fleet::settings::Engine::JetStream
                || f.auth != fleet::settings::NatsAuth::None
                || f.tls.required
            {
                println!("{}", describe_nats_security(f));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::DeadLetters { action } => {
            let config = load(&cli.config)?;
            match action {
                DeadLetterAction::List { stream: false } => print!("{}", admin::list(&config)?),
                DeadLetterAction::List { stream: true } => {
                    let rows = fleet_command(fleet::dead_letters::list(&config.fleet))?;
                    print!("{}", fleet::dead_letters::render(&rows));
                }
                DeadLetterAction::Replay { all, ids, stream } => {
                    let which = if all { Selection::All } else { Selection::Ids(ids) };
                    if stream {
                        let n = fleet_command(fleet::dead_letters::replay(&config.fleet, &which))?;
                        println!("{n} dead letter(s) replayed through the event stream");
                    } else {
                        let n = admin::replay(&config, &which)?;
                        println!("{n} dead letter(s) moved back to pending");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json } => {
            let config = load(&cli.config)?;
            let report = status::report::collect(&config);
            if json {
                println!("{}", serde_json::to_string_pretty(&report).context("rendering JSON")?);
            } else {
                print!("{}", report.render_text());
            }
            Ok(ExitCode::from(report.exit_code()))
        }
        Command::Run => run(&cli.config, app::Role::Local),
        Command::Dispatch => run(&cli.config, app::Role::Dispatch),
    }
}

/// The push part of `check-config`: what is on, and the VAPID key files
/// as they are (read only; the daemon makes them on its first start).
fn describe_push(config: &Config) -> anyhow::Result<String> {
    let p = &config.push;
    let mut out = String::new();
    if p.webpush.enabled {
        let w = &p.webpush;
        let state = match VapidKeys::inspect(&w.vapid_private_key, &w.vapid_public_key)
            .context("webpush: VAPID key files")?
        {
            None => "will be created on the first start".to_string(),
            Some((keys, true)) => format!("present, k={}", keys.public_b64()),
            Some((keys, false)) => format!("private key present, public key will be written, k={}", keys.public_b64()),
        };
        out.push_str(&format!(
            "webpush: on (ttl {} s, urgency {}, sub {}); VAPID keys {} and {}: {state}\n",
            w.ttl.as_secs(),
            w.urgency,
            w.vapid_subject,
            w.vapid_private_key.display(),
            w.vapid_public_key.display()
        ));
    } else {
        out.push_str("webpush: off\n");
    }
    match &p.deltachat.proxy_url {
        // Scheme and host only: a URL's path may carry a secret.
        Some(url) => out.push_str(&format!("deltachat: on (proxy {}/...)\n", origin(url))),
        None => out.push_str("deltachat: off\n"),
    }
    match &p.dovecot.doveadm_url {
        Some(url) => out.push_str(&format!("dovecot: gone push targets are removed through {}/...\n", origin(url))),
        None => out.push_str("dovecot: doveadm_url not set; gone push targets are only recorded by the sidecar\n"),
    }
    Ok(out)
}

/// How `[jetstream]` reaches the servers, for `check-config` (never the secrets).
fn describe_nats_security(f: &fleet::settings::FleetSettings) -> String {
    use fleet::settings::NatsAuth;
    let auth = match &f.auth {
        NatsAuth::None => "no credentials".to_string(),
        NatsAuth::UserPassword { user, .. } => format!("user {user} with a password"),
        NatsAuth::Token(_) => "a token".to_string(),
    };
    let tls = if f.tls.required {
        let mut parts = vec!["TLS required".to_string()];
        if let Some(ca) = &f.tls.ca_file {
            parts.push(format!("CA {}", ca.display()));
        }
        if let Some((cert, _)) = &f.tls.client_cert {
            parts.push(format!("client certificate {}", cert.display()));
        }
        parts.join(", ")
    } else {
        "TLS only where a server asks for it or a URL says tls://".to_string()
    };
    format!("jetstream: {auth}; {tls}")
}

/// Runs one fleet command (a few NATS requests) on a small runtime.
fn fleet_command<T>(f: impl std::future::Future<Output = Result<T, String>>) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(f).map_err(|e| anyhow::anyhow!("JetStream: {e}"))
}

fn run(path: &std::path::Path, role: app::Role) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    let log = logging::init(config.logging.format, config.logging.level);
    // A panic anywhere is fatal (STYLE §4): log it and exit non-zero so
    // systemd restarts us; the queue preserves the work.
    // Only stderr here: the panic may have happened inside the logger.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("coi-sidecar: fatal panic: {info}");
        std::process::exit(70);
    }));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_all()
        .thread_name("coi-rt")
        .build()
        .context("starting the async runtime")?;
    match runtime.block_on(app::run_as(config, log, role)) {
        Ok(()) => {
            tracing::info!("stopped");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            tracing::error!(error = %e, error_type = e.error_type(), "coi-sidecar failed");
            Err(e.into())
        }
    }
}
