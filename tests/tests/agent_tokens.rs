//! The real agent with a short-lived token against a real relay process, through a proxy that
//! records every connection: when the token expires the agent backs off instead of storming
//! the relay, and replacing its token file brings it back without a restart.

use std::time::{Duration, Instant};

use sonde_tests::agent::{AgentProcess, Proxy, RelayProcess};

async fn online(relay: &RelayProcess, host: &str) -> bool {
    let (_, body) = relay.api().request("GET", "/agents", None, &[]).await;
    body["agents"].as_array().is_some_and(|a| a.iter().any(|e| e["host"] == host && e["online"] == true))
}

#[tokio::test]
async fn an_expired_token_gives_a_few_attempts_a_minute_and_a_replaced_token_file_brings_the_agent_back() {
    // No clock leeway: the token is refused the moment it expires.
    let relay = RelayProcess::start("token_leeway_s = 0").await;
    let proxy = Proxy::start(relay.addr).await;
    let token = relay.mint_agent_token("rot1", "4s");
    let mut agent = AgentProcess::spawn_at(&proxy.ws_url(), "rot1", &token, &["--disable-usage-statistics"]);
    relay.wait_online("rot1", Duration::from_secs(10)).await;
    let pid = agent.pid();

    // The relay ends the connection when the token expires.
    let deadline = Instant::now() + Duration::from_secs(15);
    let expired = loop {
        if let Some(closed) = proxy.seen().first().and_then(|s| s.closed) {
            break closed;
        }
        assert!(Instant::now() < deadline, "the relay kept a connection whose token expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_secs(20)).await;
    let attempts: Vec<_> = proxy.seen().into_iter().filter(|s| s.opened >= expired).collect();
    assert!((1..=3).contains(&attempts.len()), "{} connection attempts in 20 s with an expired token", attempts.len());
    for a in &attempts {
        let refused_in = a.closed.map(|c| c.duration_since(a.opened));
        assert!(refused_in.is_some_and(|d| d < Duration::from_secs(3)), "the relay accepted an expired token: {a:?}");
    }
    assert!(!online(&relay, "rot1").await, "offline while its token is expired");

    // Rotation: a fresh token in the file, and the same process comes back at once.
    let replaced = Instant::now();
    agent.replace_token(&relay.mint_agent_token("rot1", "1h"));
    relay.wait_online("rot1", Duration::from_secs(5)).await;
    assert!(replaced.elapsed() < Duration::from_secs(5));
    assert!(agent.is_running() && agent.pid() == pid, "no restart needed");
    assert!(proxy.opened_since(replaced) <= 2, "{} attempts to come back", proxy.opened_since(replaced));
}
