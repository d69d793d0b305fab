#!/usr/bin/env bash
# make demo: walk ze's host lifecycle in a scratch prefix and show each step.
set -euo pipefail
cd "$(dirname "$0")/.."
ZE=${ZE:-target/release/ze}
scratch=$(mktemp -d /tmp/ze-demo.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
prefix="$scratch/opt/ze"

step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "${*:2}"; "${@:2}"; }

step "1. install the binary (dry run first)" "$ZE" install local --prefix "$prefix" --dry-run
step "   install the binary" "$ZE" install local --prefix "$prefix"
printf '\n\033[1m== 2. create the database\033[0m\n$ echo demo-password | %s init --config %s --username admin --password-stdin\n' \
  "$prefix/bin/ze" "$prefix/etc/ze"
echo demo-password | "$prefix/bin/ze" init --config "$prefix/etc/ze" --username admin --password-stdin
step "   the database (mode 0600, bcrypt hash only)" ls -l "$prefix/etc/ze"
step "3. the systemd unit it would install" "$prefix/bin/ze" install systemd --dry-run
step "4. version" "$prefix/bin/ze" version
step "5. remove it all" "$prefix/bin/ze" uninstall local --purge --yes
printf '\n%s is %s\n' "$prefix" "$([ -e "$prefix" ] && echo 'still there' || echo gone)"
