//! [`listen`]: the one listening socket of a web process, on `0.0.0.0:$PORT`.

use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::TcpListener;

/// Binding the app's port failed.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// `PORT` is set but is not a port number.
    #[error("environment variable `PORT` is `{0}`: expected a port number from 1 to 65535")]
    InvalidPort(String),
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

/// Binds `0.0.0.0:$PORT`, or `0.0.0.0:default_port` when `PORT` is unset or empty.
pub async fn listen(default_port: u16) -> Result<TcpListener, ListenError> {
    let port = port_from(std::env::var("PORT").ok().as_deref(), default_port)?;
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
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
}
