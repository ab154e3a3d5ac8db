//! [`listen`]: the one listening socket of a web process, on `127.0.0.1:$PORT`.
//!
//! Under shoal an instance is reached through the router, which connects over loopback: an
//! instance that listened on every interface could also be reached from the network beside
//! the router, where a client can forge the `X-Forwarded-*` headers the router sets and the
//! app trusts. So the default is loopback only, and the rare app that must be reachable
//! directly (in a container whose port is published, say) says so with
//! `SHOAL_LISTEN_HOST=0.0.0.0` (or `::`, or one interface's address).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::net::TcpListener;

/// The environment variable that moves [`listen`] off loopback.
const LISTEN_HOST_VAR: &str = "SHOAL_LISTEN_HOST";

/// Binding the app's port failed.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// `PORT` is set but is not a port number.
    #[error("environment variable `PORT` is `{0}`: expected a port number from 1 to 65535")]
    InvalidPort(String),
    /// `SHOAL_LISTEN_HOST` is set but is not an IP address.
    #[error(
        "environment variable `SHOAL_LISTEN_HOST` is `{0}`: expected an IP address such as \
         `127.0.0.1`, `0.0.0.0` or `::`"
    )]
    InvalidHost(String),
    /// The port is taken or not allowed.
    #[error("cannot listen on `{addr}`")]
    Bind {
        /// The address tried.
        addr: SocketAddr,
        /// Why it failed (e.g. address in use).
        #[source]
        source: std::io::Error,
    },
}

/// Binds `127.0.0.1:$PORT`, or `127.0.0.1:default_port` when `PORT` is unset or empty.
///
/// `SHOAL_LISTEN_HOST` (an IP address) replaces `127.0.0.1`: set it to `0.0.0.0` or `::`
/// only for an app that must be reachable from other machines without the router.
pub async fn listen(default_port: u16) -> Result<TcpListener, ListenError> {
    let var = |name| std::env::var(name).ok();
    let port = port_from(var("PORT").as_deref(), default_port)?;
    let host = host_from(var(LISTEN_HOST_VAR).as_deref())?;
    let addr = SocketAddr::new(host, port);
    TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError::Bind { addr, source })
}

fn port_from(var: Option<&str>, default_port: u16) -> Result<u16, ListenError> {
    match var.map(str::trim) {
        None | Some("") => Ok(default_port),
        Some(v) => v
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| ListenError::InvalidPort(v.to_owned())),
    }
}

fn host_from(var: Option<&str>) -> Result<IpAddr, ListenError> {
    match var.map(str::trim) {
        None | Some("") => Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        // `[::]` as well as `::`: the bracketed form is how addresses with ports are written.
        Some(v) => v
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .unwrap_or(v)
            .parse()
            .map_err(|_| ListenError::InvalidHost(v.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_comes_from_the_variable_or_the_default() {
        assert_eq!(port_from(None, 3000).unwrap(), 3000);
        assert_eq!(port_from(Some(""), 3000).unwrap(), 3000);
        assert_eq!(port_from(Some("5100"), 3000).unwrap(), 5100);
        for bad in ["0", "65536", "web", "-1"] {
            let err = port_from(Some(bad), 3000).unwrap_err().to_string();
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
    }

    #[test]
    fn host_is_loopback_unless_the_variable_says_otherwise() {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(host_from(None).unwrap(), loopback);
        assert_eq!(host_from(Some(" ")).unwrap(), loopback);
        assert_eq!(
            host_from(Some("0.0.0.0")).unwrap(),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        );
        assert!(host_from(Some("::")).unwrap().is_unspecified());
        assert!(host_from(Some("[::1]")).unwrap().is_loopback());
        for bad in ["localhost", "0.0.0.0:80", "*", "[::"] {
            let err = host_from(Some(bad)).unwrap_err().to_string();
            assert!(
                err.contains(&format!("`{bad}`")) && err.contains("`SHOAL_LISTEN_HOST`"),
                "{err}"
            );
        }
    }
}
