//! Where a connection was going before an iptables REDIRECT (installed by `baton init-net`) sent
//! it to this listener: the outbound listener routes captured connections by it.

use std::io;
use std::net::{IpAddr, SocketAddr};

/// The destination a connection had before an iptables REDIRECT sent it here
/// (`getsockopt(SOL_IP, SO_ORIGINAL_DST)`; `SOL_IPV6`/`IP6T_SO_ORIGINAL_DST` for IPv6). For a
/// connection conntrack saw but nothing rewrote it is the address the client really reached;
/// without a conntrack entry it fails (`ENOENT`).
pub fn original_dst(stream: &tokio::net::TcpStream) -> io::Result<SocketAddr> {
    // A v4 connection accepted on a dual-stack socket (local `::ffff:a.b.c.d`) is tracked as v4.
    let v6 = match stream.local_addr()?.ip() {
        IpAddr::V4(_) => false,
        IpAddr::V6(ip) => ip.to_ipv4_mapped().is_none(),
    };
    let socket = socket2::SockRef::from(stream);
    let addr = if v6 {
        socket.original_dst_v6()?
    } else {
        socket.original_dst_v4()?
    };
    addr.as_socket().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "SO_ORIGINAL_DST returned an address that is not IP",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::original_dst;

    #[tokio::test]
    async fn original_dst_of_a_plain_connection_is_its_real_destination_or_an_error() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        // Not redirected: no conntrack entry (an error) or the address it really reached.
        match original_dst(&server) {
            Ok(a) => assert_eq!(a, addr),
            Err(e) => assert!(e.raw_os_error().is_some(), "{e}"),
        }
    }
}
