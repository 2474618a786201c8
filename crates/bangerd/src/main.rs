//! `bangerd`, the banger daemon (and `bangerd root-helper`, `bangerd system`); see the library.

fn main() {
    bangerd::entry::main();
}
