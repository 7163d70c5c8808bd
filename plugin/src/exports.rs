//! The symbols Dovecot's module loader looks up with `dlsym` in
//! `lib95_coi_plugin.so` (module name `coi`), and nothing else; plus the
//! same three for module name `doveadm_coi`: the same file, symlinked as
//! `<moduledir>/doveadm/lib10_doveadm_coi_plugin.so`, is the doveadm plugin
//! that registers `doveadm coi ...` (docs/migration.md). doveadm loads its
//! plugin directory at start-up, before it initialises any mail plugin, so
//! the commands must be registered from there; dlopen() of the symlink
//! returns the already loaded object, so both modules share one copy.
//!
//! C code compiled into a cdylib is not exported, so these are defined in
//! Rust. Dovecot loads modules `RTLD_GLOBAL`: every exported name carries
//! the `coi_` prefix.

use std::ffi::{c_char, c_void};

use crate::{ffi, guard, log::LogEvent, ops};

/// A `const char *` that may live in a `static`.
#[repr(transparent)]
pub struct AbiVersion(*const c_char);

// SAFETY: points to an immutable, 'static, NUL-terminated string.
unsafe impl Sync for AbiVersion {}

/// `DOVECOT_ABI_VERSION` of the headers this plugin was built against; the
/// loader refuses the module when it differs from its own.
#[no_mangle]
pub static coi_plugin_version: AbiVersion =
    AbiVersion(concat!(env!("COI_DOVECOT_ABI_VERSION"), "\0").as_ptr().cast());

/// Called by Dovecot once per process after loading the module.
///
/// # Safety
/// `module` is Dovecot's `struct module *` for this plugin, valid until
/// `coi_plugin_deinit` returns.
#[no_mangle]
pub unsafe extern "C" fn coi_plugin_init(module: *mut c_void) {
    guard::install();
    // SAFETY: `module` comes straight from Dovecot's loader; the ops table
    // is a 'static value.
    let status = unsafe { ffi::coi_shim_init(module, &ops::OPS) };
    if status != 0 {
        LogEvent::process().error(format_args!("plugin initialisation failed; mail is delivered as without it"));
    }
}

/// Called by Dovecot before unloading the module; undoes everything
/// `coi_plugin_init` did.
#[no_mangle]
pub extern "C" fn coi_plugin_deinit() {
    guard::call("deinit", (), crate::events::report_drops_at_exit);
    // SAFETY: removes the hooks the shim installed in init; safe to call
    // even when init failed.
    unsafe { ffi::coi_shim_deinit() };
    guard::uninstall();
}

/// `doveadm_coi_plugin_version`: the doveadm plugin is this same file.
#[no_mangle]
pub static doveadm_coi_plugin_version: AbiVersion =
    AbiVersion(concat!(env!("COI_DOVECOT_ABI_VERSION"), "\0").as_ptr().cast());

/// Called by doveadm when it loads its plugin directory: registers the
/// `doveadm coi` commands.
///
/// # Safety
/// `module` is Dovecot's `struct module *` (unused).
#[no_mangle]
pub unsafe extern "C" fn doveadm_coi_plugin_init(_module: *mut c_void) {
    guard::install();
    // SAFETY: registers static command tables; the shim checks that it
    // runs inside doveadm.
    unsafe { ffi::coi_shim_doveadm_init() };
}

/// Called by doveadm before unloading its plugins.
#[no_mangle]
pub extern "C" fn doveadm_coi_plugin_deinit() {
    // SAFETY: undoes coi_shim_doveadm_init; safe when it did nothing.
    unsafe { ffi::coi_shim_doveadm_deinit() };
}
