//! Build script of the plugin cdylib.
//!
//! Finds the Dovecot headers, reads the ABI version the plugin must export,
//! compiles the C shim (`plugin/shim/`) against those headers, and runs
//! bindgen over `include/coi-shim.h` only: Dovecot's own structs change with
//! the ABI version, so they never reach Rust. Nothing from Dovecot is
//! linked; the host process provides its symbols at load time.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::exit;

const SHIM_SOURCES: &[&str] = &[
    "plugin/shim/coi-plugin.c",
    "plugin/shim/coi-deliver.c",
    "plugin/shim/coi-metadata.c",
    "plugin/shim/coi-notify.c",
    "plugin/shim/coi-log.c",
    "plugin/shim/coi-folders.c",
    "plugin/shim/coi-attributes.c",
    "plugin/shim/coi-imap.c",
    "plugin/shim/coi-lifecycle.c",
    "plugin/shim/coi-seen.c",
    "plugin/shim/coi-replication.c",
    "plugin/shim/coi-recall.c",
    "plugin/shim/coi-read.c",
    "plugin/shim/coi-doveadm.c",
    // Dovecot 2.4 settings; empty with 2.3 headers
    "plugin/shim/coi-settings24.c",
];
const SHIM_PRIVATE_HEADER: &str = "plugin/shim/coi-private.h";
const SHIM_HEADER: &str = "include/coi-shim.h";

fn main() {
    for var in ["DOVECOT_INCLUDE_DIR", "DOVECOT_CONFIG"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed={SHIM_HEADER}");
    println!("cargo:rerun-if-changed={SHIM_PRIVATE_HEADER}");
    for source in SHIM_SOURCES {
        println!("cargo:rerun-if-changed={source}");
    }

    let include_dir = find_dovecot_include_dir();
    println!("cargo:rerun-if-changed={}", include_dir.join("config.h").display());
    let abi_version = read_abi_version(&include_dir);
    println!("cargo:rustc-env=COI_DOVECOT_ABI_VERSION={abi_version}");

    compile_shim(&include_dir);
    generate_bindings();
}

/// `DOVECOT_INCLUDE_DIR` wins; then `incdir` from `dovecot-config`
/// (`DOVECOT_CONFIG` or the packaged location); then `/usr/include/dovecot`.
fn find_dovecot_include_dir() -> PathBuf {
    let mut candidates = Vec::new();
    if let Some(dir) = env::var_os("DOVECOT_INCLUDE_DIR") {
        candidates.push(PathBuf::from(dir));
    } else {
        let config = env::var_os("DOVECOT_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/lib/dovecot/dovecot-config"));
        if let Some(dir) = include_dir_from_dovecot_config(&config) {
            candidates.push(dir);
        }
        candidates.push(PathBuf::from("/usr/include/dovecot"));
    }
    for dir in &candidates {
        if dir.join("config.h").is_file() {
            return dir.clone();
        }
    }
    eprintln!(
        "coi: Dovecot headers not found (looked for config.h in {}): install the Debian package \
         dovecot-dev, or set DOVECOT_INCLUDE_DIR",
        candidates.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
    );
    exit(1);
}

fn include_dir_from_dovecot_config(path: &Path) -> Option<PathBuf> {
    let text = fs::read_to_string(path).ok()?;
    println!("cargo:rerun-if-changed={}", path.display());
    text.lines().find_map(|line| {
        let value = line.strip_prefix("dovecot_pkgincludedir=")?;
        Some(PathBuf::from(value.trim_matches(|c| c == '"' || c == '\'')))
    })
}

/// The loader compares `<name>_plugin_version` against its own
/// `DOVECOT_ABI_VERSION`, so the value must come from the headers built
/// against, never from a constant.
fn read_abi_version(include_dir: &Path) -> String {
    let config_h = include_dir.join("config.h");
    let text = fs::read_to_string(&config_h).unwrap_or_else(|err| {
        eprintln!("coi: cannot read {}: {err}", config_h.display());
        exit(1);
    });
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("#define") && words.next() == Some("DOVECOT_ABI_VERSION") {
            let value: String = words.collect::<Vec<_>>().join(" ");
            let value = value.trim().trim_matches('"');
            if !value.is_empty() && !value.contains('"') && !value.contains('\\') {
                return value.to_string();
            }
        }
    }
    eprintln!("coi: {} defines no DOVECOT_ABI_VERSION; is it Dovecot's config.h?", config_h.display());
    exit(1);
}

fn compile_shim(include_dir: &Path) {
    let mut build = cc::Build::new();
    build
        .include(include_dir)
        .include("include")
        .define("HAVE_CONFIG_H", None)
        .flag_if_supported("-std=gnu11")
        .flag_if_supported("-fvisibility=hidden")
        .warnings(true)
        .extra_warnings(false);
    for source in SHIM_SOURCES {
        build.file(source);
    }
    build.compile("coi_shim");
}

fn generate_bindings() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let bindings = bindgen::Builder::default()
        .header(SHIM_HEADER)
        .allowlist_function("coi_.*")
        .allowlist_type("coi_.*")
        .allowlist_var("COI_.*")
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .layout_tests(true)
        .generate()
        .unwrap_or_else(|err| {
            eprintln!("coi: bindgen failed on {SHIM_HEADER}: {err} (is libclang-dev installed?)");
            exit(1);
        });
    bindings.write_to_file(out.join("coi_shim_bindings.rs")).unwrap_or_else(|err| {
        eprintln!("coi: cannot write bindings: {err}");
        exit(1);
    });
}
