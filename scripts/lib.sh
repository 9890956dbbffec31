# Shared set-up for scripts/run.sh and scripts/test.sh: install what is missing.

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

APT_UPDATED=0
apt_install() {
  if [ "$APT_UPDATED" -eq 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# redis-server (cluster tests), chromium (browser tests), bc (test summary), node and npm.
ensure_system_packages() {
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v bc >/dev/null || missing+=(bc)
  command -v curl >/dev/null || missing+=(curl)
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
  command -v python3 >/dev/null || missing+=(python3 python3-venv)
  # Test certificates are made at test time; Chromium trusts the test CA through an NSS database.
  command -v openssl >/dev/null || missing+=(openssl)
  command -v certutil >/dev/null || missing+=(libnss3-tools)
  # promtool checks deploy/prometheus; the real prometheus scrapes a relay in a Rust test.
  command -v promtool >/dev/null || missing+=(prometheus)
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt_install "${missing[@]}"
  fi
}

ensure_rust() {
  if ! command -v cargo >/dev/null; then
    [ -f "$HOME/.cargo/env" ] && source "$HOME/.cargo/env"
  fi
  command -v cargo >/dev/null || { echo "cargo is required (install Rust with rustup)"; exit 1; }
}

# cargo-fuzz and the nightly toolchain it builds with (libFuzzer needs -Z flags).
ensure_cargo_fuzz() {
  if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal || { echo "a nightly Rust toolchain is required for fuzzing"; return 1; }
  fi
  if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked >/dev/null 2>&1 || { echo "cannot install cargo-fuzz"; return 1; }
  fi
}
