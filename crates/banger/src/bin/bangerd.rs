//! `bangerd`, the banger daemon; see the `bangerd` library crate.

fn main() {
    bangerd::entry::main();
}
