#!/usr/bin/env bash
# Install the Debian packages Draftwire's dev stack and test suite run for real: redis-server
# (Debian builds it with TLS), openssl, PostgreSQL server binaries, Prometheus (promtool), Alertmanager (amtool), and
# headless Chromium with its WebDriver for the browser tests (tests/web).
# Installs only what is missing; needs root (or sudo) the first time.
set -euo pipefail

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v openssl >/dev/null || need+=(openssl)  # throwaway certificates for Redis TLS tests
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || need+=(postgresql)
command -v promtool >/dev/null || need+=(prometheus)
command -v amtool >/dev/null || need+=(prometheus-alertmanager)
command -v pg_dump >/dev/null || need+=(postgresql-client)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "==> installing Debian packages: ${need[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "!! need root to apt-get install ${need[*]}; run: sudo apt-get install ${need[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts the packaged services; Draftwire runs its own throwaway ones instead.
for svc in redis-server prometheus prometheus-alertmanager postgresql; do
  $sudo systemctl disable --now "$svc" >/dev/null 2>&1 || $sudo service "$svc" stop >/dev/null 2>&1 || true
done
