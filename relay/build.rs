//! Builds the dashboard (`web/`, with npm) when its sources changed, and copies the three
//! assets into OUT_DIR for `include_bytes!`. Without npm, a page saying how to build the
//! dashboard is embedded instead, with a cargo warning.

use std::path::{Path, PathBuf};
use std::process::Command;

const ASSETS: [&str; 3] = ["index.html", "app.js", "app.css"];

fn newest(dir: &Path) -> Option<std::time::SystemTime> {
    let mut latest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let p = entry.path();
        let t = if p.is_dir() { newest(&p) } else { entry.metadata().ok().and_then(|m| m.modified().ok()) };
        latest = latest.max(t);
    }
    latest
}

fn run(dir: &Path, args: &[&str]) -> bool {
    Command::new("npm").args(args).current_dir(dir).status().is_ok_and(|s| s.success())
}

fn main() {
    // Read when the script runs, not when it is compiled: a compiled script can be reused by
    // a build of another checkout sharing the target directory, which must find its own web/.
    let web = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR")).join("../web");
    let dist = web.join("dist");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    for p in ["src", "package.json", "package-lock.json", "build.mjs"] {
        println!("cargo:rerun-if-changed={}", web.join(p).display());
    }
    println!("cargo:rerun-if-env-changed=SONDE_WEB_PREBUILT");
    let have_project = web.join("package.json").exists();
    let built_at = ASSETS.iter().map(|a| std::fs::metadata(dist.join(a)).and_then(|m| m.modified()).ok()).min().flatten();
    let sources_at = newest(&web.join("src")).max(std::fs::metadata(web.join("package.json")).and_then(|m| m.modified()).ok());
    let stale = built_at.is_none() || sources_at > built_at;
    if have_project && stale && std::env::var_os("SONDE_WEB_PREBUILT").is_none() {
        let installed = web.join("node_modules").exists() || run(&web, &["ci", "--no-audit", "--no-fund"]);
        if !(installed && run(&web, &["run", "build"])) {
            println!("cargo:warning=the dashboard could not be built (npm ci && npm run build in web/); serving a placeholder page");
        }
    }
    for a in ASSETS {
        let src = dist.join(a);
        let dst = out.join(a);
        if std::fs::copy(&src, &dst).is_err() {
            let placeholder = match a {
                "index.html" => "<!doctype html><title>Sonde</title><p>The dashboard was not built: run <code>npm ci &amp;&amp; npm run build</code> in <code>web/</code> and rebuild the relay.</p>",
                _ => "",
            };
            std::fs::write(&dst, placeholder).expect("write placeholder");
        }
    }
}
