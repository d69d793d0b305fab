#!/usr/bin/env bash
# make demo: the main job on a virtual target. Build the installer kernel
# (make kernel, or ZE_INSTALL_KERNEL), the initrd and a test image, serve
# them over HTTP on loopback, boot a blank QEMU machine with the installer,
# and show it install and reboot. Then a short walk through ze's host
# lifecycle.
set -euo pipefail
cd "$(dirname "$0")/.."
ZE=${ZE:-target/release/ze}
bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ -z "${ZE_INSTALL_KERNEL:-}" ]; then
  bold "installer kernel (make kernel)"
  make --no-print-directory kernel
fi
bold "installer initrd"
"$ZE" appliance initrd
bold "install on a virtual target (QEMU)"
cargo run --quiet --release --locked -p ze-qemu -- demo

scratch=$(mktemp -d /tmp/ze-demo.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
prefix="$scratch/opt/ze"
step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "${*:2}"; "${@:2}"; }
step "host: install the binary" "$ZE" install local --prefix "$prefix"
printf '$ echo demo-password | %s init --config %s --username admin --password-stdin\n' "$prefix/bin/ze" "$prefix/etc/ze"
echo demo-password | "$prefix/bin/ze" init --config "$prefix/etc/ze" --username admin --password-stdin
step "host: the systemd unit it would install" "$prefix/bin/ze" install systemd --dry-run
step "host: remove it all" "$prefix/bin/ze" uninstall local --purge --yes
