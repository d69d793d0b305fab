# ze: the entry points a person types. `make demo` and `make test` work on a
# fresh Debian 12 machine: they install what is missing first.

SHELL := /bin/bash
CARGO ?= cargo
ARCH ?= amd64
FIRMWARE_TRIPLE_amd64 := x86_64-unknown-linux-gnu
FIRMWARE_TRIPLE_arm64 := aarch64-unknown-linux-gnu
FIRMWARE_TRIPLE := $(FIRMWARE_TRIPLE_$(ARCH))
FIRMWARE_RUSTFLAGS_VAR := CARGO_TARGET_$(shell echo $(FIRMWARE_TRIPLE) | tr 'a-z-' 'A-Z_')_RUSTFLAGS
ZE := target/release/ze

# Debian packages the tests and the demo use. `make deps` installs the
# missing ones (as root, or through sudo).
APT_PACKAGES := \
	qemu-system-x86 qemu-utils ovmf ipxe ipxe-qemu \
	xorriso grub-efi-amd64-bin grub-common mtools dosfstools e2fsprogs gdisk fdisk \
	busybox-static udhcpc isc-dhcp-client tftpd-hpa tftp-hpa atftp curl \
	dnsmasq-base nginx-light kea-admin kea-dhcp4-server \
	linux-source-6.1 build-essential bc flex bison libelf-dev libssl-dev cpio xz-utils \
	iproute2 systemd openssh-client sshpass socat

.PHONY: all demo test test-unit test-host deps build firmware lint fmt clean ze-pxe bench bench-pxe fuzz-pxe

all: build

## demo: the main job on a built-in virtual target
demo: deps build
	bash qemu/demo.sh

## test: every test tier that exists, on a fresh machine
test: deps build firmware
	$(CARGO) test --workspace --locked
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

build:
	$(CARGO) build --release --locked -p ze

## firmware: the installer PID 1 for ARCH (see linker/README.md)
firmware:
	$(FIRMWARE_RUSTFLAGS_VAR)="$$(tr '\n' ' ' < linker/rustflags)" \
	  $(CARGO) build --locked -p ze-installer --bin ze-installer --features pid1 \
	    --profile firmware --target $(FIRMWARE_TRIPLE) --target-dir target/firmware
	@ls -l target/firmware/$(FIRMWARE_TRIPLE)/firmware/ze-installer

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

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
	  echo "make ze-pxe: $(CURDIR)/build/initrd/initrd.img.gz is missing: build it with \`ze appliance initrd\`" >&2; missing=1; fi; \
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

## bench: every benchmark; results and commands in docs/PERFORMANCE.md
bench: bench-pxe

## bench-pxe: TFTP vs tftpd-hpa and dnsmasq, HTTP vs nginx, DHCP vs kea (root)
bench-pxe: deps build
	bash bench/pxe.sh

## fuzz-pxe: run each provisioning-server fuzz target (nightly, cargo-fuzz)
FUZZ_SECONDS ?= 120
fuzz-pxe:
	cd fuzz && for t in dhcp_packet tftp_packet http_request brace_config; do \
	  cargo +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; done
