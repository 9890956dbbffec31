#!/usr/bin/env bash
# The same relay binary with [recorder] enabled = false appended to the config it is given.
args=("$@")
for i in "${!args[@]}"; do
  if [ "${args[$i]}" = --config ]; then
    cfg=${args[$((i + 1))]}
    off="${cfg%.toml}-recorder-off.toml"
    cp "$cfg" "$off"
    printf '\n[recorder]\nenabled = false\n' >> "$off"
    args[$((i + 1))]=$off
  fi
done
exec /tmp/sonde-relay-after2 "${args[@]}"
