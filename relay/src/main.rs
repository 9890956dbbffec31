use std::process::ExitCode;

use clap::Parser;
use sonde_relay::cli::{Cli, Command};
use sonde_relay::{config::Config, server};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        None | Some(Command::Serve) => serve(&cli),
        Some(Command::Token(args)) => match args.mint() {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sonde-relay token: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn serve(cli: &Cli) -> ExitCode {
    let (config, dev) = match cli.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sonde-relay: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    // A certificate or key that will not load stops the relay before it binds anything.
    if let Some(files) = &config.tls {
        if let Err(e) = sonde_relay::tls::Tls::load(files) {
            eprintln!("sonde-relay: invalid TLS configuration: {e}");
            return ExitCode::from(2);
        }
    }
    init_tracing(&cli.log_format);
    sonde_relay::edge::install_panic_hook();
    // Accepting, timers and the cluster link; connections are served by `io_threads`.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(async move {
        let listener = match server::bind(config.bind) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("sonde-relay: cannot listen on {}: {e}", config.bind);
                return ExitCode::from(1);
            }
        };
        let stop = shutdown_signal();
        print_banner(&config, listener.local_addr().unwrap_or(config.bind), dev);
        match server::run(listener, config, stop).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sonde-relay: {e}");
                ExitCode::from(1)
            }
        }
    })
}

fn print_banner(config: &Config, addr: std::net::SocketAddr, dev: bool) {
    let (http, ws) = if config.tls.is_some() { ("https", "wss") } else { ("http", "ws") };
    println!("Sonde relay listening on {http}://{addr}");
    // A ready viewer token only for the development app: anyone reading the logs of a real
    // deployment could otherwise watch every host.
    if let Some(app) = config.apps.first().filter(|_| dev) {
        let viewer = sonde_relay::tokens::role_claims(&app.id, "viewer", None, None, std::time::Duration::from_secs(12 * 3600))
            .map(|c| sonde_relay::tokens::mint_hs256(&c, &app.secret));
        if let Ok(token) = viewer {
            println!("  dashboard: {http}://{addr}/#key={}&token={token}", app.key);
        }
    } else if let Some(app) = config.apps.first() {
        println!("  dashboard: {http}://{addr}/#key={} (mint a viewer token with `sonde-relay token --role viewer`)", app.key);
    }
    for app in &config.apps {
        println!("  app {}: websocket {ws}://{addr}/app/{}  HTTP API {http}://{addr}/apps/{}", app.id, app.key, app.id);
    }
    if dev {
        let app = &config.apps[0];
        println!("  development app: id={} key={} secret={} (for local use only; configure your own with --app or --config)", app.id, app.key, app.secret);
    }
    println!("  health {http}://{addr}/healthz  metrics {http}://{addr}/metrics");
    if let Some(m) = config.metrics_bind {
        println!("  also on http://{m}: /healthz /readyz /metrics only");
    }
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SONDE_LOG").unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Installs the SIGTERM and SIGINT handlers now (before anyone is told the relay is up) and
/// resolves when either signal comes.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}
