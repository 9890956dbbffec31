#!/usr/bin/env bash
# Checks the absences ARCHITECTURE.md states ("Invariants"), as far as a search of the source
# can: each rule prints what breaks it, and the script fails if any does. Test code (files
# named tests*.rs, and whatever follows a file's `#[cfg(test)]`) is not held to them.
set -uo pipefail
cd "$(dirname "$0")/.."

# Non-test lines of the Rust files under the given folders, as FILE:LINE:TEXT.
code_lines() {
  find "$@" -name '*.rs' ! -name 'tests*.rs' -print0 | sort -z | xargs -0 awk '
    FNR == 1 { in_test = 0 }
    /^#\[cfg\(test\)\]/ { in_test = 1 }
    !in_test && $0 !~ /^[[:space:]]*\/\// { print FILENAME ":" FNR ":" $0 }'
}

BROKEN=0
rule() {
  local what=$1 found=$2
  if [ -n "$found" ]; then
    printf 'invariant broken: %s\n%s\n\n' "$what" "$found"
    BROKEN=1
  else
    printf 'ok: %s\n' "$what"
  fi
}

rule "the relay's modules import each other in layers, never in a circle (scripts/layers.py)" \
  "$(out=$(python3 scripts/layers.py 2>&1) || echo "$out")"

hub=$(code_lines relay/src/hub)
rule "the fan-out core (relay/src/hub) never imports axum, hyper or serde" \
  "$(grep -E '\b(axum|hyper|serde|serde_json)::' <<<"$hub")"
rule "the fan-out core never awaits" \
  "$(grep -E '\.await\b|\basync (fn|move|\{)' <<<"$hub")"
rule "the fan-out core keeps no process-wide state (its lanes belong to their relay)" \
  "$(grep -E '\bstatic [A-Z_]+: *(Atomic|Mutex|RwLock)' <<<"$hub")"
rule "the fan-out core imports no edge, the cluster, webhooks, sessions or insight" \
  "$(grep -E 'crate::(ws|http|server|tls|cluster|webhooks|sessions|insight|apps)\b' <<<"$hub")"

rule "only the wiring holds the relay's whole state: nothing but main.rs names crate::server (edges take their part)" \
  "$(grep -E 'crate::server\b|\bAppState\b' <<<"$(code_lines relay/src)" | grep -vE '^relay/src/(server|main)\.rs:')"
rule "the accept path's layers point down: ws, http and tls import nothing of accept, and tls imports neither edge" \
  "$(grep -E 'crate::accept\b' <<<"$(code_lines relay/src/ws relay/src/http relay/src/tls)"; grep -E 'crate::(ws|http)\b' <<<"$(code_lines relay/src/tls)")"
rule "seeing inside the relay (relay/src/insight) imports nothing of the HTTP edge (its endpoints live in http/)" \
  "$(grep -E 'crate::http\b' <<<"$(code_lines relay/src/insight)")"

rule "the websocket edge (relay/src/ws) imports nothing of the HTTP edge" \
  "$(grep -E 'crate::http\b' <<<"$(code_lines relay/src/ws)")"

rule "tokens (relay/src/tokens) import nothing of the config (the config builds their KeySettings)" \
  "$(grep -E 'crate::config\b' <<<"$(code_lines relay/src/tokens)")"

rule "every setting is declared in relay/src/config, which imports nothing of the relay but tokens (a verifier) and redact" \
  "$(grep -E 'crate::[a-z_]+' <<<"$(code_lines relay/src/config)" | grep -vE 'crate::(tokens|redact|config)\b'; grep -E 'struct [A-Za-z]+(Config|Settings) *[{(;]' <<<"$(code_lines relay/src)" | grep -v '^relay/src/config/')"

rule "a signed API request is checked by http::Signed alone (no handler reads its body or calls auth::verify)" \
  "$(grep -E 'BytesRejection|auth::verify' <<<"$(code_lines relay/src)" | grep -vE '^relay/src/(http/signed|reply)\.rs:')"

relay=$(code_lines relay/src agent/src)
# A close or error code written as a number: RFC 6455's (1000-1015) or Pusher's (4000-4399)
# after a name that makes it one (close, code, close_tcp, write_close, …). Lengths, limits and
# ports that happen to match are not.
rule "no close or error code is a bare number outside protocol::close" \
  "$(grep -E '(close|code|Close|Code)[^;]*\b(10(0[0-9]|1[0-5])|4[0-3][0-9][0-9])\b' <<<"$relay" | grep -vE '\b(4[0-3][0-9][0-9]|10[01][0-9])\.\.=?|registry\.register\(')"
rule "relay code builds no Pusher JSON by hand (only protocol does)" \
  "$(grep -E 'format!\(.*(\\"|")(event|channel|data)(\\"|")' <<<"$(code_lines relay/src)")"
rule "no metric is labelled by channel (unbounded)" \
  "$(grep -E 'EncodeLabelSet' -A8 <<<"$(cat relay/src/metrics.rs relay/src/insight/*.rs relay/src/webhooks/*.rs)" | grep -vE '^\s*//' | grep -E '\bchannel\s*:')"

# Sonde's channel and event names are written once: protocol/src/sonde.rs for Rust, and
# web/src/names.ts (checked against it by web/test/names.test.ts) for the dashboard.
rule "Sonde's channel and event names are written only in protocol/src/sonde.rs" \
  "$(grep -E '"(private-sonde-|sonde:|client-sonde-)' <<<"$(code_lines relay/src agent/src bench/src)")"
rule "the dashboard names channels, events and close codes only in web/src/names.ts" \
  "$(grep -nE "'(private-sonde-|sonde:|client-sonde-|pusher:subscription_)|\b4[0-3][0-9][0-9]\b" web/src/*.ts | grep -v '^web/src/names\.ts:')"

exit $BROKEN
