//! Link the `ze-installer` binary as a static, libc-free ELF through the
//! script in `linker/` (see linker/README.md). Only the binary gets these
//! arguments; the library and its tests link normally.

fn main() {
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let script = format!("{manifest}/../linker/{arch}.ld");
    println!("cargo:rerun-if-changed={script}");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_PID1").is_some() {
        for arg in [
            "-nostartfiles",
            "-nostdlib",
            "-static",
            "-Wl,--gc-sections",
            "-Wl,--build-id=none",
        ] {
            println!("cargo:rustc-link-arg-bins={arg}");
        }
        println!("cargo:rustc-link-arg-bins=-T{script}");
    }
}
