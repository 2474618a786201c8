//! End-to-end tests with real guests.
//!
//! Each test runs its own banger (throwaway XDG dirs, its own daemon) inside
//! a network namespace it creates, so guest addresses never leave it. The
//! kernel and the golden image are fixtures built once by banger's own
//! `kernel build` and `image build` (`scripts/e2e-fixtures`) and cached
//! outside the repository. Guests boot under QEMU/TCG on hosts where KVM
//! cannot run ordinary guests, and on Firecracker where it can
//! (`BANGER_E2E_ENGINE`).
//!
//! When something they need is missing (root, qemu, the fixtures, the
//! static agent), the tests print one SKIPPED line saying what, and pass.

mod access;
mod firecracker;
mod harness;
mod host;
mod images;
mod interactive;
mod lifecycle;
mod mcp;
mod nested;
mod run;
mod sdk;
mod system;
mod term;
