//! The `sonde-relay` binary as users start it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use sonde_tests::agent::{workspace_bin, TempDir};

#[test]
fn invalid_config_exits_2_before_binding() {
    let dir = TempDir::new("cli");
    let bad = dir.0.join("bad.toml");
    std::fs::write(&bad, "[[apps]]\nid = \"abc\"\nkey = \"k\"\nsecret = \"s\"\n").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--config".into(), bad.display().to_string()], "numeric"),
        (vec!["--app".into(), "1:k".into()], "ID:KEY:SECRET"),
        (vec!["--config".into(), "/nonexistent.toml".into()], "cannot read"),
        (vec!["--bind".into(), "127.0.0.1:0".into(), "--app".into(), "1:a:s".into(), "--app".into(), "1:b:s".into()], "share the id"),
    ];
    for (args, want) in cases {
        let out = Command::new(workspace_bin("sonde-relay")).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "nothing was started: {args:?}");
    }
}

/// The relay binary with app 7 on a free port: the process, its address and the rest of its
/// banner.
fn start_app_7() -> (std::process::Child, String, std::io::Lines<BufReader<std::process::ChildStdout>>) {
    let mut child = Command::new(workspace_bin("sonde-relay"))
        .args(["--bind", "127.0.0.1:0"])
        .env("SONDE_APP", "7:key7:secret7")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first.strip_prefix("Sonde relay listening on http://").expect(&first).to_owned();
    (child, addr, lines)
}

#[test]
fn starts_prints_its_urls_and_stops_on_sigterm() {
    let (mut child, addr, mut lines) = start_app_7();
    let dashboard = lines.next().unwrap().unwrap();
    assert!(dashboard.contains(&format!("http://{addr}/#key=key7")), "{dashboard}");
    assert!(!dashboard.contains("token="), "a configured relay prints no token: {dashboard}");
    let app = lines.next().unwrap().unwrap();
    assert!(app.contains(&format!("ws://{addr}/app/key7")), "{app}");
    let health = std::net::TcpStream::connect(&addr);
    assert!(health.is_ok());
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let mut status = None;
    for _ in 0..100 {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(status.expect("exits after SIGTERM").success());
}

/// `GET /healthz` on a fresh connection: the status line, or the error.
fn healthz(addr: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    Ok(reply.lines().next().unwrap_or_default().to_owned())
}

#[test]
fn sighup_without_tls_does_not_end_the_relay() {
    let (mut child, addr, lines) = start_app_7();
    std::thread::spawn(move || lines.for_each(drop));
    // Serving, so the relay's signal handlers are in place.
    assert_eq!(healthz(&addr).unwrap(), "HTTP/1.1 200 OK");
    Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "SIGHUP (systemctl reload) ended a relay without TLS");
    assert_eq!(healthz(&addr).unwrap(), "HTTP/1.1 200 OK");
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn only_the_development_mode_prints_a_ready_token() {
    let mut child = Command::new(workspace_bin("sonde-relay"))
        .args(["--bind", "127.0.0.1:0"])
        .env_remove("SONDE_APP")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first.strip_prefix("Sonde relay listening on http://").expect(&first).to_owned();
    let dashboard = lines.next().unwrap().unwrap();
    assert!(dashboard.contains(&format!("http://{addr}/#key=sonde-dev&token=ey")), "{dashboard}");
    child.kill().unwrap();
    let _ = child.wait();
}

#[test]
fn secrets_stay_out_of_help_and_absurd_lifetimes_are_refused() {
    let help = Command::new(workspace_bin("sonde-relay"))
        .arg("--help")
        .env("SONDE_APP", "1:key:topsecret-app")
        .env("SONDE_REDIS", "redis://:topsecret-redis@127.0.0.1:1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success() && text.contains("SONDE_APP"), "{text}");
    assert!(!text.contains("topsecret"), "--help shows no secret from the environment: {text}");
    for ttl in ["106751991167300d", "18446744073709551615", "3651d", "0s"] {
        let out = Command::new(workspace_bin("sonde-relay"))
            .args(["token", "--app", "1", "--role", "viewer", "--ttl", ttl])
            .env("SONDE_APP_SECRET", "s")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "--ttl {ttl}");
        assert!(out.stdout.is_empty(), "no token for --ttl {ttl}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("lifetime"), "--ttl {ttl}: {err}");
    }
}

#[test]
fn token_command_reads_the_secret_from_env_or_file() {
    let dir = TempDir::new("cli");
    let secret = dir.0.join("secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let by_file = Command::new(workspace_bin("sonde-relay"))
        .args(["token", "--app", "1", "--role", "agent", "--host", "web1", "--ttl", "1h", "--secret-file"])
        .arg(&secret)
        .output()
        .unwrap();
    let by_env = Command::new(workspace_bin("sonde-relay"))
        .args(["token", "--app", "1", "--role", "agent", "--host", "web1", "--ttl", "1h"])
        .env("SONDE_APP_SECRET", "s3cret")
        .output()
        .unwrap();
    for out in [&by_file, &by_env] {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let token = String::from_utf8(out.stdout.clone()).unwrap();
        let mut app = sonde_relay::config::AppConfig::from_flag("1:key:s3cret").unwrap();
        app.token_leeway_s = 0;
        let grant = app.verifier().unwrap().verify(token.trim()).unwrap();
        assert!(grant.may_publish("private-sonde-host.web1") && !grant.may_publish("private-sonde-host.web2"));
    }
    let no_secret = Command::new(workspace_bin("sonde-relay")).args(["token", "--app", "1"]).env_remove("SONDE_APP_SECRET").output().unwrap();
    assert_eq!(no_secret.status.code(), Some(2));
    let bad_role = Command::new(workspace_bin("sonde-relay")).args(["token", "--app", "1", "--role", "admin", "--secret", "x"]).output().unwrap();
    assert!(String::from_utf8_lossy(&bad_role.stderr).contains("unknown role"));
}
