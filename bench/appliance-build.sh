#!/usr/bin/env bash
# make bench-appliance: `ze appliance build` of a 2 GiB image against the
# same layout made by the usual shell pipeline (sgdisk, grub-mkstandalone,
# grub-mkimage, mkfs.vfat + mtools, mksquashfs, mke2fs -d, openssl sha256),
# side by side, RUNS times each, alternating. Reports median wall time and
# the bytes allocated on disk against the nominal size. Inputs: ZE (default
# the static release ze of make build), KERNEL (default build/kernel/Image),
# RUNS (default 5), SIZE (default 2G).
set -euo pipefail
cd "$(dirname "$0")/.."
ZE=${ZE:-target/static/x86_64-unknown-linux-gnu/release/ze}
KERNEL=${KERNEL:-build/kernel/Image}
RUNS=${RUNS:-5}
SIZE=${SIZE:-2G}
for t in "$ZE" "$KERNEL"; do [ -e "$t" ] || { echo "bench: $t is missing (make build kernel)" >&2; exit 1; }; done
for p in sgdisk mkfs.vfat mmd mcopy mksquashfs mke2fs grub-mkstandalone grub-mkimage openssl; do
  command -v "$p" >/dev/null || { echo "bench: $p is missing (make deps)" >&2; exit 1; }
done
work=$(mktemp -d /var/tmp/ze-bench-appliance.XXXXXX)
trap 'rm -rf "$work"' EXIT
export XDG_CONFIG_HOME="$work/config"
"$ZE" appliance init --ssh-username admin --ssh-password bench bench >/dev/null
dir="$XDG_CONFIG_HOME/ze/appliances/bench"
# The static ze the image carries: built once, outside the timed runs.
static=target/static/x86_64-unknown-linux-gnu/release/ze
"$ZE" appliance build --size 354M --kernel "$KERNEL" bench >/dev/null
rm -f "$dir"/ze-*.img

bytes=$(numfmt --from=iec "$SIZE")
sectors=$((bytes / 512))

peer() { # the same layout, the same contents, with the usual tools
  local img=$work/peer.img s=$work/peer
  rm -rf "$s" "$img"; mkdir -p "$s/root/usr/bin" "$s/root/sbin" "$s/stage/ze"
  truncate -s "$bytes" "$img"
  sgdisk -o -n1:2048:+64M -t1:ef00 -c1:ESP -n2:0:+128M -t2:8304 -c2:root-a \
    -n3:0:+128M -t3:8304 -c3:root-b -n4:0:$((sectors - 2048 - 1)) -t4:8300 -c4:perm \
    -n5:40:2047 -t5:ef02 -c5:bios-boot "$img" >/dev/null
  printf 'set timeout=0\n' > "$s/grub.cfg"
  grub-mkstandalone -O x86_64-efi -o "$s/BOOTX64.EFI" --locales= --themes= --fonts= \
    --install-modules="part_gpt fat search regexp test echo loadenv linux efi_gop normal" \
    "boot/grub/grub.cfg=$s/grub.cfg"
  # BIOS: the core image into p5, boot.img's code into LBA 0 (the few
  # bytes of block-list patching that make it boot are left out).
  grub-mkimage -O i386-pc -o "$s/core.img" -c "$s/grub.cfg" -p '(hd0,gpt1)' \
    biosdisk part_gpt fat search search_fs_uuid loadenv linux normal test regexp echo serial terminal
  dd if="$s/core.img" of="$img" bs=512 seek=40 conv=notrunc status=none
  dd if=/usr/lib/grub/i386-pc/boot.img of="$img" bs=440 count=1 conv=notrunc status=none
  mkfs.vfat -F 32 -s 1 -n ZE-ESP --offset 2048 "$img" 65536 >/dev/null 2>&1
  mmd -i "$img@@1M" ::/EFI ::/EFI/BOOT ::/ze ::/ze/a ::/ze/b
  mcopy -i "$img@@1M" "$s/BOOTX64.EFI" ::/EFI/BOOT/
  mcopy -i "$img@@1M" "$KERNEL" ::/ze/a/vmlinuz
  mcopy -i "$img@@1M" "$KERNEL" ::/ze/b/vmlinuz
  cp "$static" "$s/root/usr/bin/ze"; ln -s ../usr/bin/ze "$s/root/sbin/init"
  mkdir -p "$s/root/"{dev,proc,sys,run,tmp,perm,etc}
  mksquashfs "$s/root" "$s/root.sqfs" -comp gzip -noappend -quiet -all-root >/dev/null
  dd if="$s/root.sqfs" of="$img" bs=1M seek=65 conv=notrunc,sparse status=none
  dd if="$s/root.sqfs" of="$img" bs=1M seek=193 conv=notrunc,sparse status=none
  cp "$dir/ze.conf" "$s/stage/ze/database.zefs"; echo '{}' > "$s/stage/ze/build.json"
  mke2fs -q -F -t ext4 -L perm -m 0 -E offset=$((321 << 20)),root_owner=0:0,lazy_itable_init=1,lazy_journal_init=1,nodiscard \
    -d "$s/stage" "$img" $(( (bytes - (322 << 20)) / 1024 ))k
  openssl dgst -sha256 "$img" >/dev/null # SHA-NI, as ze uses; coreutils sha256sum is ~7x slower here
}

ours() {
  rm -f "$dir"/ze-*.img
  "$ZE" appliance build --size "$SIZE" --kernel "$KERNEL" --ze "$static" bench >/dev/null
}

now() { date +%s.%N; }
declare -a t_ours t_peer
for i in $(seq "$RUNS"); do
  a=$(now); ours; b=$(now); t_ours+=("$(echo "$b - $a" | bc)")
  a=$(now); peer; b=$(now); t_peer+=("$(echo "$b - $a" | bc)")
  sleep 1 # image names have one-second resolution
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mo=$(median "${t_ours[@]}"); mp=$(median "${t_peer[@]}")
img=$(ls "$dir"/ze-*.img)
alloc_ours=$(( $(stat -c %b "$img") * 512 )); alloc_peer=$(( $(stat -c %b "$work/peer.img") * 512 ))
echo "runs: ours ${t_ours[*]}; peer ${t_peer[*]}"
printf '| %s image, wall time (median of %d) | %.2f s | %.2f s | %.2f |\n' "$SIZE" "$RUNS" "$mo" "$mp" "$(echo "$mo / $mp" | bc -l)"
printf '| allocated on disk (nominal %s) | %s (%.2f%%) | %s (%.2f%%) | %.2f |\n' "$SIZE" \
  "$(numfmt --to=iec-i --suffix=B "$alloc_ours")" "$(echo "100 * $alloc_ours / $bytes" | bc -l)" \
  "$(numfmt --to=iec-i --suffix=B "$alloc_peer")" "$(echo "100 * $alloc_peer / $bytes" | bc -l)" \
  "$(echo "$alloc_ours / $alloc_peer" | bc -l)"
