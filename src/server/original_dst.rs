//! Where a connection was going before an iptables REDIRECT (installed by `baton init-net`) sent
//! it to this listener: the outbound listener routes captured connections by it.

use std::io;
use std::net::{IpAddr, SocketAddr};

/// The destination a connection had before an iptables REDIRECT sent it here
/// (`getsockopt(SOL_IP, SO_ORIGINAL_DST)`; `SOL_IPV6`/`IP6T_SO_ORIGINAL_DST` for IPv6). For a
/// connection conntrack saw but nothing rewrote it is the address the client really reached;
/// without a conntrack entry it fails (`ENOENT`).
pub fn original_dst(stream: &tokio::net::TcpStream) -> io::Result<SocketAddr> {
    use std::os::fd::AsRawFd;
    const SO_ORIGINAL_DST: libc::c_int = 80; // linux/netfilter_ipv4.h; IP6T_ same value
    let fd = stream.as_raw_fd();
    // A v4 connection accepted on a dual-stack socket (local `::ffff:a.b.c.d`) is tracked as v4.
    let v6 = match stream.local_addr()?.ip() {
        IpAddr::V4(_) => false,
        IpAddr::V6(ip) => ip.to_ipv4_mapped().is_none(),
    };
    // SAFETY: `fd` is a valid socket owned by `stream` for this call; `storage` is large enough
    // for either sockaddr and `len` tells the kernel its size.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let level = if v6 { libc::SOL_IPV6 } else { libc::SOL_IP };
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            SO_ORIGINAL_DST,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in (family AF_INET) into `storage`.
            let a: libc::sockaddr_in =
                unsafe { std::ptr::read((&storage as *const libc::sockaddr_storage).cast()) };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Ok(SocketAddr::from((ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6 (family AF_INET6) into `storage`.
            let a: libc::sockaddr_in6 =
                unsafe { std::ptr::read((&storage as *const libc::sockaddr_storage).cast()) };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Ok(SocketAddr::from((ip, u16::from_be(a.sin6_port))))
        }
        family => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("SO_ORIGINAL_DST returned address family {family}"),
        )),
    }
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
