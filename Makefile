# ze: the entry points a person types. `make demo` and `make test` work on a
# fresh Debian 12 machine: they install what is missing first.

SHELL := /bin/bash
CARGO ?= cargo
ARCH ?= amd64
FIRMWARE_TRIPLE_amd64 := x86_64-unknown-linux-gnu
FIRMWARE_TRIPLE_arm64 := aarch64-unknown-linux-gnu
FIRMWARE_TRIPLE := $(FIRMWARE_TRIPLE_$(ARCH))
FIRMWARE_RUSTFLAGS_VAR := CARGO_TARGET_$(shell echo $(FIRMWARE_TRIPLE) | tr 'a-z-' 'A-Z_')_RUSTFLAGS
PROFILE ?= qemu
# The default installer kernel version; kernel-config/linux.version is the
# one place that names it.
KERNEL_VERSION := $(shell cat kernel-config/linux.version)
# The release ze is static (glibc static-pie), so one binary runs on any
# x86-64 Linux and `ze appliance build` puts the running ze in the image.
# The flags go through CARGO_TARGET_<TRIPLE>_RUSTFLAGS with --target, so
# build scripts and proc macros stay dynamic. `ze appliance build` runs the
# same command when it has to build one (host/src/appliance/binary.rs).
STATIC_TRIPLE := $(FIRMWARE_TRIPLE)
STATIC_RUSTFLAGS_VAR := $(FIRMWARE_RUSTFLAGS_VAR)
STATIC_RUSTFLAGS := -C target-feature=+crt-static -C strip=symbols
ZE := target/static/$(STATIC_TRIPLE)/release/ze
# The debug build shares its dependencies with `cargo test`; the make
# targets that only drive other work use it to avoid a second compile.
ZE_DEV := target/debug/ze

# Debian packages the tests and the demo use. `make deps` installs the
# missing ones (as root, or through sudo).
APT_PACKAGES := \
	qemu-system-x86 qemu-utils ovmf ipxe ipxe-qemu \
	xorriso grub-efi-amd64-bin grub-pc-bin grub-common mtools dosfstools exfatprogs e2fsprogs gdisk fdisk \
	busybox-static udhcpc isc-dhcp-client tftpd-hpa tftp-hpa atftp curl \
	dnsmasq-base nginx-light kea-admin kea-dhcp4-server isc-dhcp-server isc-dhcp-relay procps \
	linux-source-$(KERNEL_VERSION) build-essential bc flex bison libelf-dev libssl-dev cpio xz-utils \
	iproute2 systemd openssh-client sshpass socat \
	squashfs-tools openssl bmap-tools \
	chromium python3-prometheus-client

.PHONY: all demo test deps build build-dev firmware kernel kernels initrd static-ze lint fmt clean \
	ze-install-qemu-test ze-install-iso-qemu-test ze-install-hw-qemu-test appliance-qemu-test bench bench-firmware bench-map \
	bench-appliance bench-iso fuzz ze-pxe bench-pxe bench-relay bench-storm

all: build

## demo: the main job on a built-in virtual target
demo: deps build-dev kernel initrd
	$(CARGO) run --locked -p ze-qemu -- demo

## test: every test tier that exists, on a fresh machine
test: deps build-dev firmware kernels initrd
	$(CARGO) test --workspace --locked
	$(MAKE) ze-install-qemu-test
	$(MAKE) ze-install-iso-qemu-test
	$(MAKE) ze-install-hw-qemu-test
	$(MAKE) appliance-qemu-test
	$(MAKE) lint

deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' "$$p" 2>/dev/null | grep -q '^install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "make deps: all $(words $(APT_PACKAGES)) packages present"; fi

## build: the release ze, static, at $(ZE)
build:
	env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS -u CARGO_BUILD_RUSTFLAGS \
	  $(STATIC_RUSTFLAGS_VAR)="$(STATIC_RUSTFLAGS)" \
	  $(CARGO) build --release --locked -p ze --target $(STATIC_TRIPLE) --target-dir target/static
	@ls -l $(ZE)

## static-ze: the same build as `make build`
static-ze: build

build-dev:
	$(CARGO) build --locked -p ze

## kernel: the installer kernel (PROFILE=qemu|hardware, ARCH=amd64|arm64) at
## build/kernel/Image; cached under ~/.cache/ze/installer-kernel/
kernel: build-dev
	$(ZE_DEV) appliance kernel --profile $(PROFILE) --arch $(ARCH)

## kernels: both profiles for ARCH, hardware first, so build/kernel/ is left
## holding the qemu kernel that the QEMU tiers boot
kernels: build-dev
	$(ZE_DEV) appliance kernel --profile hardware --arch $(ARCH)
	$(ZE_DEV) appliance kernel --profile qemu --arch $(ARCH)

## firmware: the installer PID 1 for ARCH (see linker/README.md)
firmware:
	$(FIRMWARE_RUSTFLAGS_VAR)="$$(tr '\n' ' ' < linker/rustflags)" \
	  $(CARGO) build --locked -p ze-installer --bin ze-installer --features pid1 \
	    --profile firmware --target $(FIRMWARE_TRIPLE) --target-dir target/firmware
	@ls -l target/firmware/$(FIRMWARE_TRIPLE)/firmware/ze-installer

## initrd: build/initrd/initrd.img.gz for ARCH (the firmware as /init)
initrd: build-dev
	$(ZE_DEV) appliance initrd --arch $(ARCH)

## ze-install-qemu-test: the installer in QEMU (TCG): install over HTTP and
## every fault case (kernel: ZE_INSTALL_KERNEL or build/kernel/Image); then the
## whole chain: build an appliance image with ze appliance, install it over
## HTTP, boot the written disk under OVMF, log in over SSH, `show version`
ze-install-qemu-test: initrd kernel
	$(CARGO) run --locked -p ze-qemu -- test
	$(CARGO) run --locked -p ze-qemu -- appliance-test

## ze-install-iso-qemu-test: the ISO install in QEMU + OVMF (TCG): build an
## appliance image and its ISO with the real kernel and initrd, install from
## the ISO as a CD and as a dd-written disk, compare the written disk with the
## image, boot it to ze's version lines; two disks without --target refused
ze-install-iso-qemu-test: initrd kernel
	$(CARGO) run --locked -p ze-qemu -- iso-test

## ze-install-hw-qemu-test: the hardware-profile kernel in QEMU + OVMF (TCG):
## the ISO on a USB stick (xHCI) installed onto NVMe by its by-id name, the
## VGA console checked by screendump, the first boot with the same NVRAM
## over e1000e with an SSH login; HTTP installs onto NVMe and AHCI SATA
ze-install-hw-qemu-test: initrd kernels
	$(CARGO) run --locked -p ze-qemu -- hw-test

## bench-iso: ISO install time in QEMU against the HTTP install of the same
## appliance image (medians of 5 runs each; the measured work runs in the
## guests, so the harness needs no release build)
bench-iso: initrd kernel
	$(CARGO) run --locked -p ze-qemu -- iso-bench

## bench-map: the block-map install against the whole stream (a PXE
## install of the default 2 GiB image in QEMU, time and wire bytes) and
## the installer's map transfer against bmaptool copy on the host
bench-map: initrd kernel build
	ZE_INSTALL_IMAGE_SIZE=$${ZE_INSTALL_IMAGE_SIZE:-2G} ZE_BIN=$(CURDIR)/$(ZE) \
	  $(CARGO) run --release --locked -p ze-qemu -- map-bench

## bench-firmware: installer initrd size, start-up and download pipeline,
## each against busybox-static + a shell script measured in the same run
bench-firmware: initrd
	$(CARGO) run --release --locked -p ze-qemu -- bench

## appliance-qemu-test: tier 3 for the appliance image and ISO (QEMU + OVMF,
## and SeaBIOS): build an image, boot it to ze as PID 1 by UEFI and by BIOS;
## build the ISO, boot it to the installer kernel as a CD and as a disk
appliance-qemu-test: build-dev kernel
	$(CARGO) test --locked -p ze --test appliance_qemu -- --ignored --test-threads=2 --nocapture

## bench: every benchmark; results go to docs/PERFORMANCE.md by hand
bench: bench-firmware bench-appliance bench-iso bench-pxe bench-map bench-storm

## bench-appliance: ze appliance build of a 2 GiB image against the shell
## pipeline (sgdisk, mkfs.vfat, mtools, mksquashfs, mke2fs, openssl)
bench-appliance: build kernel
	bash bench/appliance-build.sh

## fuzz: run every fuzz target for FUZZ_SECONDS (nightly + cargo-fuzz); new
## inputs go to fuzz/target/corpus/<target>, the committed seeds are read too
FUZZ_SECONDS ?= 60
fuzz:
	cd fuzz && for t in $$(ls fuzz_targets | sed 's/\.rs$$//'); do \
	  mkdir -p target/corpus/$$t corpus/$$t && \
	  cargo +nightly fuzz run $$t target/corpus/$$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(FIRMWARE_RUSTFLAGS_VAR)="$$(tr '\n' ' ' < linker/rustflags)" \
	  $(CARGO) clippy --locked -p ze-installer --bin ze-installer --features pid1 \
	    --profile firmware --target $(FIRMWARE_TRIPLE) --target-dir target/firmware -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf build

## ze-pxe: stage build/pxe for `ze install remote` (kernel, initrd, iPXE)
PXE_DIR ?= build/pxe
IPXE_DIR ?= /usr/lib/ipxe
ze-pxe:
	@missing=0; \
	if [ ! -f build/kernel/Image ]; then \
	  echo "make ze-pxe: $(CURDIR)/build/kernel/Image is missing: build it with \`make kernel\`" >&2; missing=1; fi; \
	if [ ! -f build/initrd/initrd.img.gz ]; then \
	  echo "make ze-pxe: $(CURDIR)/build/initrd/initrd.img.gz is missing: build it with \`make initrd\`" >&2; missing=1; fi; \
	for f in ipxe.efi ipxe.pxe; do \
	  if [ ! -f $(IPXE_DIR)/$$f ]; then \
	    echo "make ze-pxe: $(IPXE_DIR)/$$f is missing: install Debian's ipxe package (\`make deps\`) or pass IPXE_DIR=" >&2; missing=1; fi; \
	done; \
	[ $$missing = 0 ] || exit 1
	install -d $(PXE_DIR)/boot $(PXE_DIR)/tftp $(PXE_DIR)/state
	install -m 0644 build/kernel/Image $(PXE_DIR)/boot/vmlinuz
	install -m 0644 build/initrd/initrd.img.gz $(PXE_DIR)/boot/initrd.img.gz
	for f in ipxe.efi ipxe.pxe undionly.kpxe snponly.efi; do \
	  [ ! -f $(IPXE_DIR)/$$f ] || install -m 0644 $(IPXE_DIR)/$$f $(PXE_DIR)/tftp/$$f; \
	done
	@echo "staged $(CURDIR)/$(PXE_DIR): boot/vmlinuz boot/initrd.img.gz tftp/ipxe.efi tftp/ipxe.pxe"

## bench-pxe: TFTP vs tftpd-hpa and dnsmasq, HTTP vs nginx, DHCP vs kea,
## DHCP through relays vs kea (root)
bench-pxe: deps build
	bash bench/pxe.sh

## bench-relay: only the DHCP-through-two-relays part of bench-pxe
bench-relay: deps build
	SKIP="tftp window http dhcp" bash bench/pxe.sh

## bench-storm: a boot storm of 200 targets (udhcpc, curl over TFTP and HTTP)
## against ze and against dnsmasq + nginx, interleaved, medians of RUNS
## (default 5); the table goes to build/bench/storm.md (root;
## host/tests/storm.rs)
bench-storm: deps
	$(CARGO) test --release --locked -p ze --test storm -- --ignored --nocapture bench_storm
