//! `banger vm forward`: forward host ports to guest ports through the agent,
//! until interrupted. (For forwards that live as long as the VM, use
//! `-p HOST:GUEST` at create.)

use crate::client::Client;
use banger_agent_proto::{read_frame, write_json, ConnectRequest, Kind, Op, Request, Response};
use banger_api::PortForward;
use clap::Args;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  banger vm forward web 8080:80\n  banger vm forward web 0.0.0.0:5432:5432 127.0.0.1:9000:9000"
)]
pub struct ForwardArgs {
    /// VM name, id or unique prefix
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::completion::vms))]
    pub vm: String,
    /// [HOST_ADDR:]HOST_PORT:GUEST_PORT (default address 127.0.0.1)
    #[arg(required = true, value_parser = parse_forward)]
    pub forwards: Vec<PortForward>,
}

/// Parses `[ADDR:]HOST:GUEST`; IPv6 addresses go in brackets.
pub fn parse_forward(s: &str) -> Result<PortForward, String> {
    let bad = || format!("{s:?} is not [HOST_ADDR:]HOST_PORT:GUEST_PORT");
    let (addr, rest) = if let Some(r) = s.strip_prefix('[') {
        let (a, rest) = r.split_once("]:").ok_or_else(bad)?;
        (a.to_string(), rest)
    } else {
        match s.matches(':').count() {
            1 => ("127.0.0.1".to_string(), s),
            2 => {
                let (a, rest) = s.split_once(':').ok_or_else(bad)?;
                (a.to_string(), rest)
            }
            _ => return Err(bad()),
        }
    };
    let (h, g) = rest.split_once(':').ok_or_else(bad)?;
    let host_port: u16 = h.parse().map_err(|_| bad())?;
    let guest_port: u16 = g.parse().map_err(|_| bad())?;
    if host_port == 0 || guest_port == 0 {
        return Err(format!("{s:?}: ports must be 1-65535"));
    }
    addr.parse::<std::net::IpAddr>().map_err(|_| format!("{s:?}: {addr:?} is not an IP address"))?;
    Ok(PortForward { host_addr: addr, host_port, guest_port })
}

pub async fn run(client: &Client, a: ForwardArgs) -> anyhow::Result<i32> {
    let mut listeners = Vec::new();
    for f in &a.forwards {
        let l = tokio::net::TcpListener::bind((f.host_addr.as_str(), f.host_port)).await.map_err(|e| {
            anyhow::anyhow!("Cannot listen on {}:{}: {e} (is the port in use?)", f.host_addr, f.host_port)
        })?;
        listeners.push((l, f.clone()));
    }
    // Fail now, not on the first connection, if the VM cannot be reached.
    drop(client.agent(&a.vm).await?);
    for (_, f) in &listeners {
        eprintln!("forwarding {}:{} -> {}:{}", f.host_addr, f.host_port, a.vm, f.guest_port);
    }
    eprintln!("press Ctrl-C to stop");
    for (l, f) in listeners {
        let (client, vm) = (client.clone(), a.vm.clone());
        tokio::spawn(async move {
            while let Ok((conn, _)) = l.accept().await {
                let (client, vm) = (client.clone(), vm.clone());
                tokio::spawn(async move {
                    if let Err(e) = splice(&client, &vm, f.guest_port, conn).await {
                        eprintln!("banger: forward to {vm}:{}: {e:#}", f.guest_port);
                    }
                });
            }
        });
    }
    tokio::signal::ctrl_c().await?;
    Ok(0)
}

async fn splice(client: &Client, vm: &str, port: u16, mut conn: tokio::net::TcpStream) -> anyhow::Result<()> {
    let stream = client.agent(vm).await?;
    let (mut rd, mut wr) = tokio::io::split(stream);
    write_json(&mut wr, Kind::Request, &Request::new(Op::Connect(ConnectRequest { port }))).await?;
    let f = read_frame(&mut rd).await?.ok_or_else(|| anyhow::anyhow!("the agent closed the connection"))?;
    if let Response::Error { message } = f.json::<Response>()? {
        anyhow::bail!("{message}");
    }
    let mut guest = rd.unsplit(wr);
    let _ = conn.set_nodelay(true);
    tokio::io::copy_bidirectional(&mut conn, &mut guest).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_forward;

    #[test]
    fn forward_specs() {
        let f = parse_forward("8080:80").unwrap();
        assert_eq!((f.host_addr.as_str(), f.host_port, f.guest_port), ("127.0.0.1", 8080, 80));
        let f = parse_forward("0.0.0.0:5432:5432").unwrap();
        assert_eq!(f.host_addr, "0.0.0.0");
        let f = parse_forward("[::1]:9000:90").unwrap();
        assert_eq!((f.host_addr.as_str(), f.host_port), ("::1", 9000));
        for bad in ["80", "a:b", "0:80", "8080:0", "x.y:1:2", "1:2:3:4", "70000:80"] {
            assert!(parse_forward(bad).is_err(), "{bad}");
        }
    }
}
