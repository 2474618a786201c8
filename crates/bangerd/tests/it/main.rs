//! Integration tests: the real daemon, in-process, on temp dirs and a temp
//! socket, with a real SQLite database and real files.

mod api;
mod harness;
mod images;
mod pull;
mod seed;
mod sweep;
