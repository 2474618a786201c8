//! The protocol between banger on the host and `banger-agent` in the guest.
//! Its full description, for other implementers, is `docs/agent-protocol.md`.
//!
//! Transport: a stream to the guest's vsock port [`AGENT_PORT`]. From the
//! host that is Firecracker's "hybrid vsock": connect to the VM's Unix
//! socket, write `CONNECT <port>\n`, read `OK <n>\n` ([`connect_uds`]).
//! QEMU VMs offer the same socket through vhost-device-vsock.
//!
//! These streams have no half-close (a `shutdown(SHUT_WR)` tears the whole
//! connection down), so everything is framed: a frame is a 4-byte
//! big-endian length `n`, then `n` bytes of which the first is the
//! [`Kind`] and the rest the payload.
//!
//! One operation per connection. The host sends one [`Kind::Request`]
//! frame (JSON [`Request`]); what follows depends on the operation:
//! - `health`, `ports`, `shutdown`, `sync`: one [`Kind::Response`] frame.
//! - `exec`: a `Response` (`started` or an error), then the host sends
//!   `Stdin`/`StdinEof`/`Resize`/`Signal` frames while the agent sends
//!   `Stdout`/`Stderr` frames and finally one `Exit` frame.
//! - `put_files`: the host sends a tar stream as `Data` frames, then
//!   `DataEnd`; the agent unpacks it and sends one `Response`.
//! - `get_files`: the agent sends a `Response` (`started` or an error), the
//!   tar stream as `Data` frames, then `DataEnd`, then a final `Response`.
//! - `connect`: one `Response`; after an ok, the connection carries the raw
//!   bytes of a TCP connection to the guest port (ssh, port forwards).
//!
//! Opening a connection per operation costs one vsock handshake (well
//! under a millisecond on KVM), keeps every operation's state local to its
//! connection, and lets operations run in parallel without multiplexing.

pub mod beneath;
pub mod client;
mod frame;
mod messages;
pub mod tarsafe;
mod uds;

pub use frame::{read_frame, write_frame, write_json, Frame, Kind, MAX_PAYLOAD};
pub use messages::*;
pub use uds::{connect_uds, connect_uds_within, ConnectError};

/// The vsock port the agent listens on inside every guest.
pub const AGENT_PORT: u32 = 1024;

/// Version of this protocol; the host refuses agents of another major.
pub const PROTOCOL_VERSION: u32 = 1;
