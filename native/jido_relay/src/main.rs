//! The `jido_relay` binary: parse arguments, log to stderr, run the server.
//!
//! Stdout carries exactly one line, `READY <node> <port>`, once the node is
//! registered with epmd and listening; everything else goes to stderr.

use jido_relay::config::{Command, Config, Env, USAGE};
use jido_relay::{server, shutdown};
use std::io::Write;
use std::process::ExitCode;
use tokio::net::TcpListener;
use tracing::{error, info};

/// Environment variable with a tracing filter, e.g. `debug` or
/// `jido_relay=trace`.
const LOG_ENV: &str = "JIDO_RELAY_LOG";

fn main() -> ExitCode {
    let config = match Command::parse(std::env::args().skip(1), &Env::from_process()) {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help) => {
            eprint!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("jido_relay: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    let filter = tracing_subscriber::EnvFilter::try_from_env(LOG_ENV)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_ansi(false)
        .with_target(false)
        .without_time()
        .init();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(run(config)),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(cause = %e, "relay stopped");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    info!(?config, "starting");
    // Watch stdin from the start: an owner that dies during startup must
    // not leave the relay behind.
    let stdin_closed = shutdown::stdin_eof();

    let listener = TcpListener::bind(("0.0.0.0", config.port)).await?;
    let port = listener.local_addr()?.port();
    let (epmd_keepalive, creation) =
        server::register(&config.node_name, port, config.epmd_port).await?;
    info!(node = %config.node_name, port, creation = creation.get(), "registered with epmd as a hidden node");

    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "READY {} {}", config.node_name, port)?;
        out.flush()?;
    }

    let shutdown = async {
        tokio::select! {
            _ = stdin_closed => info!("stdin closed; shutting down"),
            signal = shutdown::terminate_signal() => info!(signal, "shutting down"),
        }
    };
    server::run(listener, server::Settings::new(&config, creation), shutdown).await;
    drop(epmd_keepalive);
    info!("stopped");
    Ok(())
}
