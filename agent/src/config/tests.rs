use std::collections::HashMap;

use super::*;

fn sources(args: &[&str], vars: &[(&str, &str)]) -> Sources {
    Sources {
        args: std::iter::once("sonde-agent").chain(args.iter().copied()).map(OsString::from).collect(),
        env: Env::Map(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>()),
    }
}

const REQUIRED: [&str; 6] = ["--relay", "ws://127.0.0.1:6001", "--key", "k", "--token", "jwt"];

#[test]
fn defaults() {
    let c = load(&sources(&REQUIRED, &[("HOME", "/home/u")])).unwrap();
    assert_eq!(c.relay, "ws://127.0.0.1:6001");
    assert_eq!(c.token, TokenSource::Value(Secret::new("jwt")));
    assert!(c.token_in_args, "--token on the command line is noticed (ps shows it)");
    assert!(!c.host.is_empty());
    assert_eq!(c.state_dirs, [PathBuf::from(DEFAULT_STATE_DIR), PathBuf::from("/home/u/.local/state/sonde-agent")], "never /tmp");
    assert_eq!(c.statsd, Some(DEFAULT_STATSD));
    assert_eq!(DEFAULT_STATSD.to_string(), "127.0.0.1:8125");
    assert!(!c.anonymous && c.usage_statistics);
    assert!(!format!("{c:?}").contains("jwt"), "the token stays out of Debug output");
}

#[test]
fn env_file_and_flags_in_order_of_precedence() {
    let dir = std::env::temp_dir().join(format!("sonde-agent-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("agent.toml");
    std::fs::write(&path, "relay = \"ws://file:1\"\nkey = \"filekey\"\ntoken = \"filetoken\"\nhost = \"filehost\"\nstatsd = \"off\"\nanonymous = true\n")
        .unwrap();
    let vars = [("SONDE_AGENT_CONFIG", path.to_str().unwrap()), ("SONDE_AGENT_KEY", "envkey"), ("SONDE_AGENT_HOST", "envhost")];
    let c = load(&sources(&["--host", "flaghost", "--state-dir", "/srv/state"], &vars)).unwrap();
    assert_eq!(c.relay, "ws://file:1");
    assert_eq!(c.key, "envkey");
    assert_eq!(c.token, TokenSource::ConfigFile(path.clone()));
    assert_eq!(c.token.read().unwrap().expose(), "filetoken");
    assert!(!c.token_in_args);
    assert_eq!(c.host, "flaghost");
    assert_eq!(c.state_dirs, [PathBuf::from("/srv/state")]);
    assert_eq!(c.statsd, None);
    assert!(c.anonymous);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn token_sources_in_order_and_none_on_the_command_line() {
    let dir = std::env::temp_dir().join(format!("sonde-agent-config-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, "from.a.file\n").unwrap();
    let base = ["--relay", "ws://r:1", "--key", "k"];
    let with = |extra: &[&str], vars: &[(&str, &str)]| load(&sources(&[&base[..], extra].concat(), vars));

    let c = with(&["--token-file", file.to_str().unwrap()], &[]).unwrap();
    assert_eq!((c.token.clone(), c.token_in_args), (TokenSource::File(file.clone()), false));
    assert_eq!(c.token.read().unwrap().expose(), "from.a.file");
    let c = with(&[], &[("SONDE_AGENT_TOKEN", "env.jwt")]).unwrap();
    assert_eq!((c.token, c.token_in_args), (TokenSource::Value(Secret::new("env.jwt")), false));
    let c = with(&[], &[("SONDE_AGENT_TOKEN_FILE", file.to_str().unwrap())]).unwrap();
    assert_eq!(c.token, TokenSource::File(file.clone()));

    // systemd's LoadCredential=token:… puts it in $CREDENTIALS_DIRECTORY/token.
    let c = with(&[], &[("CREDENTIALS_DIRECTORY", dir.to_str().unwrap())]).unwrap();
    assert_eq!(c.token, TokenSource::File(file.clone()));
    let err = with(&[], &[("CREDENTIALS_DIRECTORY", "/nonexistent")]).unwrap_err();
    assert!(matches!(err, ConfigError::NoToken), "{err}");
    assert!(err.to_string().contains("--token-file"));

    assert!(matches!(with(&["--token", "a", "--token-file", "b"], &[]), Err(ConfigError::Cli(_))), "one or the other");
    let missing = with(&["--token-file", "/does/not/exist"], &[]).unwrap_err().to_string();
    assert!(missing.contains("/does/not/exist"), "{missing}");
    let toml = dir.join("agent.toml");
    std::fs::write(&toml, "token = \"a\"\ntoken_file = \"/x\"\n").unwrap();
    assert!(matches!(with(&["--config", toml.to_str().unwrap()], &[]), Err(ConfigError::TwoTokens(_))));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn usage_statistics_switches() {
    let mut args = REQUIRED.to_vec();
    assert!(load(&sources(&args, &[("DO_NOT_TRACK", "1")])).unwrap().usage_statistics.eq(&false));
    assert!(load(&sources(&args, &[("DO_NOT_TRACK", "0")])).unwrap().usage_statistics);
    assert!(!load(&sources(&args, &[("SONDE_AGENT_DISABLE_USAGE_STATISTICS", "true")])).unwrap().usage_statistics);
    args.push("--disable-usage-statistics");
    assert!(!load(&sources(&args, &[])).unwrap().usage_statistics);
}

#[test]
fn errors_name_the_problem() {
    let err = |args: &[&str]| load(&sources(args, &[])).unwrap_err().to_string();
    assert!(err(&["--key", "k", "--token", "t"]).contains("--relay is required"));
    assert!(err(&["--relay", "ws://r", "--token", "t"]).contains("SONDE_AGENT_KEY"));
    assert!(err(&["--relay", "http://r", "--key", "k", "--token", "t"]).contains("ws://"));
    assert!(err(&["--relay", "ws://", "--key", "k", "--token", "t"]).contains("ws://"));
    assert!(err(&["--relay", "wss://", "--key", "k", "--token", "t"]).contains("wss://"));
    assert!(err(&[&REQUIRED[..], &["--host", "bad host"]].concat()).contains("bad host"));
    assert!(err(&[&REQUIRED[..], &["--statsd", "nowhere"]].concat()).contains("--statsd"));
    assert!(err(&[&REQUIRED[..], &["--config", "/does/not/exist.toml"]].concat()).contains("/does/not/exist.toml"));
    assert!(matches!(load(&sources(&["--help"], &[])), Err(ConfigError::Cli(_))));
}

#[test]
fn tokens_never_reach_debug_output() {
    use clap::Parser;
    let cli = Cli::try_parse_from(["sonde-agent", "--relay", "ws://r:1", "--key", "k", "--token", "tok.en.secret"]).unwrap();
    let file = FileConfig::parse("token = \"file.token.secret\"\n", std::path::Path::new("agent.toml")).unwrap();
    for shown in [format!("{cli:?}"), format!("{file:?}")] {
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}

#[test]
fn wss_with_the_system_roots_or_a_ca_file() {
    let wss = ["--relay", "wss://relay.example.com", "--key", "k", "--token", "t"];
    let c = load(&sources(&wss, &[])).unwrap();
    assert_eq!((c.relay.as_str(), c.ca_file.as_ref()), ("wss://relay.example.com", None));

    let dir = std::env::temp_dir().join(format!("sonde-agent-config-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n").unwrap();
    let c = load(&sources(&wss, &[("SONDE_AGENT_CA_FILE", ca.to_str().unwrap())])).unwrap();
    assert_eq!(c.ca_file.as_deref(), Some(ca.as_path()));
    let toml = dir.join("agent.toml");
    std::fs::write(&toml, format!("ca_file = {:?}\n", ca.to_str().unwrap())).unwrap();
    let c = load(&sources(&[&wss[..], &["--config", toml.to_str().unwrap()]].concat(), &[])).unwrap();
    assert_eq!(c.ca_file.as_deref(), Some(ca.as_path()));

    // A CA file that cannot be used stops the agent at start, naming the file.
    std::fs::write(&ca, "not a certificate\n").unwrap();
    let err = load(&sources(&[&wss[..], &["--ca-file", ca.to_str().unwrap()]].concat(), &[])).unwrap_err();
    assert!(matches!(err, ConfigError::Ca(CaError::Empty(_))), "{err}");
    let err = load(&sources(&[&wss[..], &["--ca-file", "/does/not/exist.pem"]].concat(), &[])).unwrap_err().to_string();
    assert!(err.contains("/does/not/exist.pem"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}
