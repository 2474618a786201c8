//! CLI tests: the real `banger` binary against a real daemon it starts on
//! its own, all state in throwaway XDG dirs.

mod basics;
mod doctor;
mod env;
mod mcp;
mod replace;
