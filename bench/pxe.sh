#!/usr/bin/env bash
# Provisioning-server benchmarks: our tftpserver, imageserver and
# dhcpserver against their peers, side by side in one run (make bench-pxe).
#
#   TFTP  64 MiB, blksize 1468, curl: ze vs tftpd-hpa vs dnsmasq (loopback)
#         ze windowsize 16 vs windowsize 1 (host/examples/tftp_get.rs)
#   HTTP  1 GiB, curl -o /dev/null: ze vs nginx with sendfile (loopback)
#   DHCP  perfdhcp -4 full DORA across a veth pair: ze vs kea-dhcp4
#         (memfile): the highest rate with < 2.5 % drops
#   relay the same through two relays (two perfdhcp, each a relay agent
#         with its own giaddr) into two relayed subnets: ze vs kea-dhcp4
#         with the same subnets, pools and routers (make bench-relay)
#
# Each server runs in a network namespace this script creates and removes.
# Runs are interleaved (ze, peer, ze, peer, …) so machine noise hits both;
# every figure is the median of RUNS runs. Results are printed as a
# Markdown table (and written to build/bench/pxe.md).
#
# Environment: RUNS (default 5), ZE (default the static release ze of
# make build, target/static/x86_64-unknown-linux-gnu/release/ze),
# BENCH_DIR (default build/bench), DHCP_SECONDS (default 5), SKIP (a list
# of tftp, window, http, dhcp, relay to skip).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
ZE=$(realpath "${ZE:-target/static/x86_64-unknown-linux-gnu/release/ze}")
BENCH_DIR=$(realpath -m "${BENCH_DIR:-build/bench}")
DHCP_SECONDS=${DHCP_SECONDS:-5}
SKIP=${SKIP:-}
TAG=zb$$
mkdir -p "$BENCH_DIR"
OUT="$BENCH_DIR/pxe.md"
: > "$OUT"

[ "$(id -u)" = 0 ] || { echo "bench/pxe.sh: needs root (network namespaces, ports 67/69/80)" >&2; exit 1; }
for tool in curl in.tftpd dnsmasq nginx kea-dhcp4 perfdhcp ip taskset; do
  command -v "$tool" >/dev/null || { echo "bench/pxe.sh: $tool is missing: run \`make deps\`" >&2; exit 1; }
done
[ -x "$ZE" ] || { echo "bench/pxe.sh: $ZE is missing: run \`make build\`" >&2; exit 1; }
skip() { [[ " $SKIP " == *" $1 "* ]]; }
skip window || cargo build --release --locked -q -p ze --example tftp_get

PIDS=()
NSS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for n in "${NSS[@]:-}"; do [ -n "$n" ] && ip netns del "$n" 2>/dev/null || true; done
}
trap cleanup EXIT

newns() { ip netns add "$1"; ip -n "$1" link set lo up; NSS+=("$1"); }
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b/1048576}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a/b : 0)}'; }
row() { echo "$*" | tee -a "$OUT"; }
wait_port() { # ns proto port
  for _ in $(seq 100); do
    ip netns exec "$1" ss -H -l -n "-$2" "sport = :$3" | grep -q . && return 0; sleep 0.05
  done
  echo "bench/pxe.sh: nothing listens on $2 port $3 in $1" >&2; return 1
}

host_info() {
  row "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%d GiB", $2/1048576}' /proc/meminfo), $(uname -r); $(date -u +%FT%TZ); RUNS=$RUNS"
  row ""
}

# ------------------------------------------------------------------ TFTP
bench_tftp() {
  local dir=$BENCH_DIR/tftp
  mkdir -p "$dir"
  [ -f "$dir/file64" ] && [ "$(stat -c %s "$dir/file64")" = $((64 << 20)) ] ||
    head -c $((64 << 20)) /dev/urandom > "$dir/file64"
  local ns_ze=$TAG-tz ns_hpa=$TAG-th ns_dm=$TAG-td
  newns $ns_ze; newns $ns_hpa; newns $ns_dm
  printf 'daemon { log warn; }\ntftpserver { address 127.0.0.1; root %s; }\n' "$dir" > "$BENCH_DIR/tftp.conf"
  ip netns exec $ns_ze "$ZE" "$BENCH_DIR/tftp.conf" & PIDS+=($!)
  # (-a 127.0.0.1 fails: getaddrinfo with AI_ADDRCONFIG finds no
  # non-loopback address in the namespace; all addresses is the same here)
  ip netns exec $ns_hpa in.tftpd -L -a :69 -s "$dir" & PIDS+=($!)
  ip netns exec $ns_dm dnsmasq -k --conf-file=/dev/null --port=0 --enable-tftp --tftp-root="$dir" \
    --listen-address=127.0.0.1 --bind-interfaces --pid-file= --user=root --log-facility=/dev/null & PIDS+=($!)
  wait_port $ns_ze u 69; wait_port $ns_hpa u 69; wait_port $ns_dm u 69
  local cmd='curl -s --tftp-blksize 1468 -o /dev/null -w %{speed_download} tftp://127.0.0.1/file64'
  declare -A speeds=()
  for i in $(seq "$RUNS"); do
    for s in ze hpa dm; do
      local ns_var="ns_$s"
      speeds[$s]+="$(ip netns exec "${!ns_var}" $cmd) "
    done
  done
  local ze hpa dm best peer
  ze=$(tr ' ' '\n' <<< "${speeds[ze]}" | grep . | median)
  hpa=$(tr ' ' '\n' <<< "${speeds[hpa]}" | grep . | median)
  dm=$(tr ' ' '\n' <<< "${speeds[dm]}" | grep . | median)
  if awk -v a="$hpa" -v b="$dm" 'BEGIN {exit !(a >= b)}'; then best=$hpa; peer=tftpd-hpa; else best=$dm; peer=dnsmasq; fi
  row "### TFTP: 64 MiB at blksize 1468, curl client, loopback in a namespace"
  row ""
  row "| server | median MiB/s |"
  row "|---|---|"
  row "| ze tftpserver | $(mib "$ze") |"
  row "| tftpd-hpa $(dpkg-query -W -f '${Version}' tftpd-hpa 2>/dev/null) | $(mib "$hpa") |"
  row "| dnsmasq $(dpkg-query -W -f '${Version}' dnsmasq-base 2>/dev/null) | $(mib "$dm") |"
  row ""
  row "ze / best peer ($peer): **$(ratio "$ze" "$best")x** (target >= 1.0x). Command: \`$cmd\`"
  row ""
}

bench_window() {
  local dir=$BENCH_DIR/tftp ns=$TAG-tw nsp=$TAG-tp client
  client=$(realpath target/release/examples/tftp_get)
  newns $ns; newns $nsp
  printf 'daemon { log warn; }\ntftpserver { address 127.0.0.1; root %s; }\n' "$dir" > "$BENCH_DIR/tftpw.conf"
  ip netns exec $ns "$ZE" "$BENCH_DIR/tftpw.conf" & PIDS+=($!)
  # The same server pinned to CPU 0 with the client on CPU 1: every block
  # and ACK then crosses CPUs, which gives a round trip like a LAN's.
  ip netns exec $nsp taskset -c 0 "$ZE" "$BENCH_DIR/tftpw.conf" & PIDS+=($!)
  wait_port $ns u 69; wait_port $nsp u 69
  declare -A speeds=()
  for i in $(seq "$RUNS"); do
    for w in 1 16; do
      speeds[s$w]+="$(ip netns exec $ns "$client" 127.0.0.1 file64 1468 $w | awk '{print $1 / $4}') "
      speeds[p$w]+="$(ip netns exec $nsp taskset -c 1 "$client" 127.0.0.1 file64 1468 $w | awk '{print $1 / $4}') "
    done
  done
  local s1 s16 p1 p16
  s1=$(tr ' ' '\n' <<< "${speeds[s1]}" | grep . | median)
  s16=$(tr ' ' '\n' <<< "${speeds[s16]}" | grep . | median)
  p1=$(tr ' ' '\n' <<< "${speeds[p1]}" | grep . | median)
  p16=$(tr ' ' '\n' <<< "${speeds[p16]}" | grep . | median)
  row "### TFTP windowsize (RFC 7440): 64 MiB at blksize 1468, client \`host/examples/tftp_get.rs\`, loopback"
  row ""
  row "| ze tftpserver | windowsize 1, MiB/s | windowsize 16, MiB/s | 16 / 1 |"
  row "|---|---|---|---|"
  row "| client and server share the CPUs | $(mib "$s1") | $(mib "$s16") | **$(ratio "$s16" "$s1")x** |"
  row "| client on CPU 1, server on CPU 0 | $(mib "$p1") | $(mib "$p16") | **$(ratio "$p16" "$p1")x** |"
  row ""
  row "Target >= 4x. Commands: \`tftp_get 127.0.0.1 file64 1468 16\` (and \`1\`); pinned: server under \`taskset -c 0\`, client under \`taskset -c 1\`."
  row ""
}

# ------------------------------------------------------------------ HTTP
bench_http() {
  local dir=$BENCH_DIR/http ns=$TAG-h
  mkdir -p "$dir/img" "$dir/boot" "$dir/nginx"
  [ -f "$dir/img/ze-bench.img" ] && [ "$(stat -c %s "$dir/img/ze-bench.img")" = $((1 << 30)) ] ||
    head -c $((1 << 30)) /dev/urandom > "$dir/img/ze-bench.img"
  : > "$dir/boot/vmlinuz"; : > "$dir/boot/initrd.img.gz"
  newns $ns
  printf 'daemon { log warn; }\nimageserver { address 127.0.0.1; port 80; image-dir %s; image ze-bench.img; boot-dir %s; }\n' \
    "$dir/img" "$dir/boot" > "$BENCH_DIR/http.conf"
  cat > "$dir/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log;
events { worker_connections 64; }
http {
    sendfile on;
    tcp_nopush on;
    access_log off;
    client_body_temp_path $dir/nginx;
    proxy_temp_path $dir/nginx;
    fastcgi_temp_path $dir/nginx;
    uwsgi_temp_path $dir/nginx;
    scgi_temp_path $dir/nginx;
    server {
        listen 127.0.0.1:8080;
        location /install/image/ { alias $dir/img/; }
    }
}
EOF
  ip netns exec $ns "$ZE" "$BENCH_DIR/http.conf" & PIDS+=($!)
  ip netns exec $ns nginx -c "$dir/nginx/nginx.conf" & PIDS+=($!)
  wait_port $ns t 80; wait_port $ns t 8080
  local url_ze=http://127.0.0.1/install/image/ze-bench.img url_ng=http://127.0.0.1:8080/install/image/ze-bench.img
  # Warm the page cache.
  ip netns exec $ns curl -s -o /dev/null $url_ze
  declare -A speeds=()
  for i in $(seq "$RUNS"); do
    speeds[ze]+="$(ip netns exec $ns curl -s -o /dev/null -w %{speed_download} $url_ze) "
    speeds[ng]+="$(ip netns exec $ns curl -s -o /dev/null -w %{speed_download} $url_ng) "
  done
  local ze ng
  ze=$(tr ' ' '\n' <<< "${speeds[ze]}" | grep . | median)
  ng=$(tr ' ' '\n' <<< "${speeds[ng]}" | grep . | median)
  row "### HTTP: 1 GiB image, curl -o /dev/null, loopback in a namespace"
  row ""
  row "| server | median MiB/s |"
  row "|---|---|"
  row "| ze imageserver (sendfile) | $(mib "$ze") |"
  row "| nginx $(nginx -v 2>&1 | sed 's|.*/||') (sendfile on, tcp_nopush on, 1 worker) | $(mib "$ng") |"
  row ""
  row "ze / nginx: **$(ratio "$ze" "$ng")x** (target >= 0.9x). Command: \`curl -s -o /dev/null -w %{speed_download} $url_ze\`"
  row ""
}

# ------------------------------------------------------------------ DHCP
# One perfdhcp run from namespace $cns at $rate, from local address or
# interface $local (perfdhcp makes it the giaddr) to $server, with $clients
# distinct clients and perfdhcp's further arguments after them; prints
# "<rate achieved> <drop percent>".
perfdhcp_run() {
  local cns=$1 rate=$2 local=$3 server=$4 clients=$5
  shift 5
  ip netns exec "$cns" perfdhcp -4 -l "$local" -r "$rate" -R "$clients" -p "$DHCP_SECONDS" "$@" "$server" 2>&1 |
    awk '
      /^sent packets:/ {sent[n]=$3}
      /^received packets:/ {recv[n]=$3; n++}
      /^drops ratio:/ {gsub("%","",$3); drops[m++]=$3}
      END {
        # two exchanges (DO, RA); report the worse drop ratio and the
        # completed DORA count per second
        d = drops[0] > drops[1] ? drops[0] : drops[1]
        printf "%.0f %s\n", recv[1] / '"$DHCP_SECONDS"', d
      }'
}

bench_dhcp() {
  local dir=$BENCH_DIR/dhcp sns=$TAG-ds cns=$TAG-dc
  rm -rf "$dir"; mkdir -p "$dir/ze" "$dir/kea"
  newns $sns; newns $cns
  ip link add ps0 netns $sns type veth peer name pc0 netns $cns
  ip -n $sns addr add 198.18.0.1/16 dev ps0; ip -n $sns link set ps0 up
  ip -n $cns addr add 198.18.0.2/16 dev pc0; ip -n $cns link set pc0 up
  printf 'daemon { log warn; }\ndhcpserver { interface ps0; address 198.18.0.1; lease-time 3600; state-dir %s;\n  shared-network b { subnet 198.18.0.0/16 { pool 198.18.1.0 198.18.255.254; } } }\n' \
    "$dir/ze" > "$BENCH_DIR/dhcp.conf"
  cat > "$dir/kea/kea-dhcp4.conf" <<EOF
{ "Dhcp4": {
    "interfaces-config": { "interfaces": [ "ps0" ] },
    "lease-database": { "type": "memfile", "name": "$dir/kea/leases.csv", "lfc-interval": 0 },
    "valid-lifetime": 3600,
    "subnet4": [ { "id": 1, "subnet": "198.18.0.0/16", "pools": [ { "pool": "198.18.1.0 - 198.18.255.254" } ] } ],
    "loggers": [ { "name": "kea-dhcp4", "severity": "WARN", "output_options": [ { "output": "$dir/kea/kea.log" } ] } ]
} }
EOF
  # A rate ladder; each server's figure is the highest rate whose median
  # drop ratio over RUNS runs stays under 2.5 %.
  local rates=${DHCP_RATES:-"1000 2000 3000 4000 5000 6000 8000 10000 12000 16000"}
  declare -A best=() achieved=()
  for server in ze kea; do
    best[$server]=0
    for rate in $rates; do
      local drops=() got=()
      for i in $(seq "$RUNS"); do
        rm -f "$dir/ze"/*.leases "$dir/kea"/leases.csv*
        if [ $server = ze ]; then
          ip netns exec $sns "$ZE" "$BENCH_DIR/dhcp.conf" & local pid=$!
        else
          KEA_PIDFILE_DIR=$dir/kea KEA_LOCKFILE_DIR=$dir/kea ip netns exec $sns kea-dhcp4 -c "$dir/kea/kea-dhcp4.conf" >/dev/null 2>&1 & local pid=$!
        fi
        PIDS+=($pid)
        wait_port $sns u 67
        read -r r d < <(perfdhcp_run $cns "$rate" pc0 198.18.0.1 1000000)
        kill $pid 2>/dev/null; wait $pid 2>/dev/null || true
        drops+=("$d"); got+=("$r")
      done
      local md mr
      md=$(printf '%s\n' "${drops[@]}" | median)
      mr=$(printf '%s\n' "${got[@]}" | median)
      echo "  dhcp $server rate $rate: median $mr DORA/s, drops ${md}%" >&2
      if awk -v d="$md" 'BEGIN {exit !(d < 2.5)}'; then best[$server]=$rate; achieved[$server]=$mr; else break; fi
    done
  done
  row "### DHCP: perfdhcp -4 full DORA across a veth pair, highest rate with < 2.5 % drops"
  row ""
  row "| server | highest offered rate (DORA/s) with < 2.5 % drops | completed DORA/s at that rate |"
  row "|---|---|---|"
  row "| ze dhcpserver (lease file) | ${best[ze]} | ${achieved[ze]:-0} |"
  row "| kea-dhcp4 $(kea-dhcp4 -v 2>/dev/null) (memfile) | ${best[kea]} | ${achieved[kea]:-0} |"
  row ""
  row "ze / kea: **$(ratio "${best[ze]}" "${best[kea]}")x** (target >= 1.0x). Ladder: $rates. Command: \`perfdhcp -4 -l pc0 -r <rate> -R 1000000 -p $DHCP_SECONDS 198.18.0.1\`"
  row ""
}

# ----------------------------------------------------------------- relay
# Two relay agents, 198.51.100.1 and 198.51.100.129 (each a perfdhcp bound
# to that address, so it is the giaddr and gets the replies), in front of
# two relayed subnets; the server (192.0.2.1) routes them back through the
# client namespace. Each relay offers half of the rate, with 100 clients
# of its own (each /25 pool holds 125).
bench_relay() {
  local dir=$BENCH_DIR/relay sns=$TAG-rs cns=$TAG-rc
  rm -rf "$dir"; mkdir -p "$dir/ze" "$dir/kea"
  newns $sns; newns $cns
  ip link add ps0 netns $sns type veth peer name pc0 netns $cns
  ip -n $sns addr add 192.0.2.1/24 dev ps0; ip -n $sns link set ps0 up
  ip -n $cns addr add 192.0.2.2/24 dev pc0
  ip -n $cns addr add 198.51.100.1/25 dev pc0; ip -n $cns addr add 198.51.100.129/25 dev pc0
  ip -n $cns link set pc0 up
  ip -n $sns route add 198.51.100.0/24 via 192.0.2.2
  cat > "$BENCH_DIR/relay.conf" <<EOF
daemon { log warn; }
dhcpserver { interface ps0; address 192.0.2.1; lease-time 3600; state-dir $dir/ze;
  shared-network b { subnet 192.0.2.0/24 { pool 192.0.2.100 192.0.2.200; } }
  subnet 198.51.100.0/25 { pool 198.51.100.2 198.51.100.126; router 198.51.100.1; }
  subnet 198.51.100.128/25 { pool 198.51.100.130 198.51.100.254; router 198.51.100.129; }
}
EOF
  cat > "$dir/kea/kea-dhcp4.conf" <<EOF
{ "Dhcp4": {
    "interfaces-config": { "interfaces": [ "ps0" ] },
    "lease-database": { "type": "memfile", "name": "$dir/kea/leases.csv", "lfc-interval": 0 },
    "valid-lifetime": 3600,
    "subnet4": [
      { "id": 1, "subnet": "192.0.2.0/24", "pools": [ { "pool": "192.0.2.100 - 192.0.2.200" } ] },
      { "id": 2, "subnet": "198.51.100.0/25", "pools": [ { "pool": "198.51.100.2 - 198.51.100.126" } ],
        "option-data": [ { "name": "routers", "data": "198.51.100.1" } ] },
      { "id": 3, "subnet": "198.51.100.128/25", "pools": [ { "pool": "198.51.100.130 - 198.51.100.254" } ],
        "option-data": [ { "name": "routers", "data": "198.51.100.129" } ] }
    ],
    "loggers": [ { "name": "kea-dhcp4", "severity": "WARN", "output_options": [ { "output": "$dir/kea/kea.log" } ] } ]
} }
EOF
  # Interleaved: at each rate, run i of ze, then run i of kea, so load
  # from elsewhere on the machine hits both; a server stops climbing at
  # the first rate it fails.
  local rates=${DHCP_RATES:-"1000 2000 3000 4000 5000 6000 8000 10000 12000 16000"}
  declare -A best=([ze]=0 [kea]=0) achieved=() climbing=([ze]=1 [kea]=1) drops=() got=()
  for rate in $rates; do
    local half=$((rate / 2)) server
    for server in ze kea; do drops[$server]=""; got[$server]=""; done
    for i in $(seq "$RUNS"); do
      for server in ze kea; do
        [ "${climbing[$server]}" = 1 ] || continue
        rm -f "$dir/ze"/*.leases "$dir/kea"/leases.csv*
        if [ $server = ze ]; then
          ip netns exec $sns "$ZE" "$BENCH_DIR/relay.conf" & local pid=$!
        else
          KEA_PIDFILE_DIR=$dir/kea KEA_LOCKFILE_DIR=$dir/kea ip netns exec $sns kea-dhcp4 -c "$dir/kea/kea-dhcp4.conf" >/dev/null 2>&1 & local pid=$!
        fi
        PIDS+=($pid)
        wait_port $sns u 67
        perfdhcp_run $cns "$half" 198.51.100.1 192.0.2.1 100 -b mac=00:0c:01:00:00:00 > "$dir/a" &
        local pa=$!
        perfdhcp_run $cns "$half" 198.51.100.129 192.0.2.1 100 -b mac=00:0c:02:00:00:00 > "$dir/b" &
        local pb=$!
        wait $pa $pb || true  # perfdhcp exits non-zero when it saw drops
        kill $pid 2>/dev/null; wait $pid 2>/dev/null || true
        local ra da rb db
        read -r ra da < "$dir/a"; read -r rb db < "$dir/b"
        drops[$server]+="$(awk -v a="$da" -v b="$db" 'BEGIN {print (a > b ? a : b)}') "
        got[$server]+="$((ra + rb)) "
      done
    done
    for server in ze kea; do
      [ "${climbing[$server]}" = 1 ] || continue
      local md mr
      md=$(tr ' ' '\n' <<< "${drops[$server]}" | grep . | median)
      mr=$(tr ' ' '\n' <<< "${got[$server]}" | grep . | median)
      echo "  relay $server rate $rate: median $mr DORA/s, drops ${md}% (runs: ${drops[$server]})" >&2
      if awk -v d="$md" 'BEGIN {exit !(d < 2.5)}'; then best[$server]=$rate; achieved[$server]=$mr; else climbing[$server]=0; fi
    done
    [ "${climbing[ze]}${climbing[kea]}" != 00 ] || break
  done
  row "### DHCP through two relays: perfdhcp -4 full DORA into two relayed subnets, highest rate with < 2.5 % drops"
  row ""
  row "| server | highest offered rate (DORA/s, both relays) with < 2.5 % drops | completed DORA/s at that rate |"
  row "|---|---|---|"
  row "| ze dhcpserver (two relayed \`subnet\` blocks, lease file) | ${best[ze]} | ${achieved[ze]:-0} |"
  row "| kea-dhcp4 $(kea-dhcp4 -v 2>/dev/null) (the same subnets, memfile) | ${best[kea]} | ${achieved[kea]:-0} |"
  row ""
  row "ze / kea: **$(ratio "${best[ze]}" "${best[kea]}")x** (target >= 1.0x). Ladder: $rates. Commands, at once (half the rate each): \`perfdhcp -4 -l 198.51.100.1 -r <rate/2> -R 100 -p $DHCP_SECONDS -b mac=00:0c:01:00:00:00 192.0.2.1\` and \`perfdhcp -4 -l 198.51.100.129 -r <rate/2> -R 100 -p $DHCP_SECONDS -b mac=00:0c:02:00:00:00 192.0.2.1\`"
  row ""
}

host_info
skip tftp || bench_tftp
skip window || bench_window
skip http || bench_http
skip dhcp || bench_dhcp
skip relay || bench_relay
echo "results: $OUT" >&2
