//! `sonde-bench`: drives a Pusher-compatible server (Sonde or another) with websocket
//! subscribers and signed HTTP or client-event publishers, and reports throughput, loss,
//! latency and the server's CPU and memory next to the bench's own.

mod certs;
mod cli;
mod fleet;
mod monitor;
mod procstat;
mod publish;
mod pusher;
mod recorder;
mod report;
mod scan;
mod scenario;
mod sim;
mod summary;
mod tls;
mod ws;

use std::net::ToSocketAddrs;

use anyhow::Context;
use clap::Parser;

use crate::cli::{Cli, Scenario};
use crate::pusher::Target;

/// What every scenario gets.
pub struct Ctx {
    pub target: Target,
    pub server_pid: Option<u32>,
    pub connect_concurrency: usize,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Scenario::Summary { dir } = &cli.scenario {
        print!("{}", summary::run(dir)?);
        return Ok(());
    }
    if let Scenario::TlsCerts { dir, names } = &cli.scenario {
        certs::write(dir, names)?;
        let d = dir.display();
        println!("sonde-relay --tls-cert {d}/{} --tls-key {d}/{} …", certs::CERT, certs::KEY);
        println!("sonde-bench --tls --tls-ca {d}/{} …", certs::CA);
        return Ok(());
    }
    if let Scenario::FloorServer(a) = &cli.scenario {
        raise_open_files_limit();
        return scenario::floor::serve(a);
    }
    raise_open_files_limit();
    let c = &cli.common;
    let server = (c.host.as_str(), c.port).to_socket_addrs()?.next().context("host has no address")?;
    let target = Target {
        server,
        app_id: c.app_id.clone(),
        key: c.key.clone(),
        secret: c.secret.clone(),
        sources: Target::loopback_sources(server, c.source_addrs),
        recv_buffer: None,
        tls: if c.tls { Some(tls::TlsClient::new(c.tls_ca.as_deref(), &c.host)?) } else { None },
    };
    let ctx = Ctx { target, server_pid: c.server_pid, connect_concurrency: c.connect_concurrency };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = c.threads {
        rt.worker_threads(n);
    }
    let rt = rt.enable_all().build()?;
    let report = rt.block_on(async {
        if c.wait_quiet > 0 {
            monitor::wait_quiet(ctx.server_pid, 0.2, std::time::Duration::from_secs(c.wait_quiet)).await;
        }
        match &cli.scenario {
            Scenario::Idle(a) => scenario::idle::run(&ctx, a).await,
            Scenario::Broadcast(a) => scenario::broadcast::run(&ctx, a).await,
            Scenario::Hostile(a) => scenario::hostile::run(&ctx, a).await,
            Scenario::HostileAttack(a) => scenario::hostile::attack_only(&ctx, a).await,
            Scenario::Metrics(a) => scenario::metrics::run(&ctx, a).await,
            Scenario::Churn(a) => scenario::churn::run(&ctx, a).await,
            Scenario::Handshakes(a) => scenario::handshakes::run(&ctx, a).await,
            Scenario::Http(a) => scenario::http::run(&ctx, a).await,
            Scenario::Session(a) => scenario::session::run(&ctx, a).await,
            Scenario::Floor(a) => scenario::floor::run(&ctx, a).await,
            Scenario::AgentLoad(a) => scenario::agent_load::run(&ctx, a).await,
            Scenario::Webhooks(a) => scenario::webhooks::run(&ctx, a).await,
            Scenario::Fleet(a) => scenario::fleet::run(&ctx, a).await,
            Scenario::Summary { .. } | Scenario::FloorServer(_) | Scenario::TlsCerts { .. } => unreachable!("handled before the runtime starts"),
        }
    })?;
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &cli.common.save {
        std::fs::write(path, format!("{json}\n")).with_context(|| format!("writing {}", path.display()))?;
    }
    if cli.common.json {
        println!("{json}");
    } else {
        print!("{}", report.human());
    }
    // Tens of thousands of sockets close faster with the process than one by one.
    rt.shutdown_background();
    Ok(())
}

/// Each connection is a file descriptor: lift the soft limit to the hard one.
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => eprintln!("open files limit: {n}"),
        Err(e) => eprintln!("cannot raise the open files limit: {e}"),
    }
}
