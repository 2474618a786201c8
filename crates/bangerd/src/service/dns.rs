//! `.vm` names: a small authoritative DNS server for `<vm-name>.vm` on
//! 127.0.0.1 (`[network] dns_port`, default 53535; 0 turns it off).
//!
//! Answers come straight from the daemon's state: a name resolves while its
//! VM has a live engine, so records appear at start, vanish at stop, and
//! are right again the moment a restarted daemon has adopted its VMs. The
//! protocol is hickory-proto's. Names outside `.vm` are refused; unknown
//! `.vm` names get NXDOMAIN.

use super::Daemon;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// Time to live of an answer: VMs come and go.
const TTL: u32 = 5;

impl Daemon {
    /// The address of a running VM called `name`.
    fn running_vm_ip(&self, name: &str) -> Option<Ipv4Addr> {
        let vm = self.store.list_vms().ok()?.into_iter().find(|v| v.name == name)?;
        self.runtime(&vm.id)?;
        Some(vm.guest_ip)
    }

    /// Builds the answer to one query packet; `None` for garbage.
    pub fn answer_dns(&self, packet: &[u8]) -> Option<Vec<u8>> {
        let q = Message::from_vec(packet).ok()?;
        if q.metadata.message_type != MessageType::Query {
            return None;
        }
        let mut r = Message::response(q.metadata.id, q.metadata.op_code);
        r.metadata.recursion_desired = q.metadata.recursion_desired;
        r.metadata.authoritative = true;
        let code = match (q.metadata.op_code, q.queries.as_slice()) {
            (OpCode::Query, [query]) => {
                r.add_query(query.clone());
                let name = query.name().to_lowercase();
                let labels: Vec<String> =
                    name.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect();
                match labels.as_slice() {
                    [vm, tld] if tld == "vm" => match self.running_vm_ip(vm) {
                        Some(ip) => {
                            if matches!(query.query_type(), RecordType::A | RecordType::ANY) {
                                let owner = Name::from_ascii(format!("{vm}.vm.")).ok()?;
                                r.add_answer(Record::from_rdata(owner, TTL, RData::from(ip)));
                            }
                            ResponseCode::NoError
                        }
                        None => ResponseCode::NXDomain,
                    },
                    [tld] if tld == "vm" => ResponseCode::NoError,
                    _ => ResponseCode::Refused,
                }
            }
            _ => ResponseCode::NotImp,
        };
        r.metadata.response_code = code;
        r.to_vec().ok()
    }

    /// Serves DNS until the daemon stops. The port is bound here, before
    /// any bridge is set up, so that `.vm` is only ever routed to a port
    /// that is ours: if another process holds it (another local user could
    /// answer `.vm` lookups), that is an error in the log and in `doctor`,
    /// and `.vm` is not routed (see `ensure_bridge_blocking`).
    pub fn spawn_dns(self: &Arc<Self>) {
        let port = self.config.dns_port;
        if port == 0 {
            let _ = self.dns.set(Err("turned off (network.dns_port = 0)".into()));
            return;
        }
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let sock = std::net::UdpSocket::bind(addr)
            .and_then(|s| s.set_nonblocking(true).map(|_| s))
            .and_then(tokio::net::UdpSocket::from_std);
        let sock = match sock {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(
                    "no .vm names: cannot listen on {addr}/udp ({e}); another process holds the port, \
                     so .vm is not routed to it; set network.dns_port to a free port (or 0)"
                );
                let _ = self.dns.set(Err(format!("cannot listen on {addr}/udp: {e}")));
                return;
            }
        };
        let _ = self.dns.set(Ok(()));
        tracing::info!("answering DNS for .vm addr={addr}");
        let d = self.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 1500];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else { continue };
                if let Some(reply) = d.answer_dns(&buf[..n]) {
                    let _ = sock.send_to(&reply, from).await;
                }
            }
        });
    }

    /// Whether `.vm` DNS is served by this daemon.
    pub(crate) fn dns_is_ours(&self) -> bool {
        matches!(self.dns.get(), Some(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RecordType};

    /// A query packet, as a resolver would send it.
    pub fn query(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 7;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    #[test]
    fn query_packets_round_trip() {
        let q = Message::from_vec(&query("web.vm.", RecordType::A)).unwrap();
        assert_eq!(q.queries[0].name().to_ascii(), "web.vm.");
    }
}
