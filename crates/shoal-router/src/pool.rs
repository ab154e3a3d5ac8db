//! Connections to one instance: idle HTTP/1.1 keep-alive connections are reused, new ones are
//! opened on demand. A connection goes back to the pool only once it is ready for another
//! request (its previous response was read to the end). The router's own client
//! ([`crate::direct`]) and hyper's client (streamed uploads) each keep their idle connections.

use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::ClientBody;
use crate::direct::Conn;

/// hyper's client, for streamed request bodies: the client's own, as they arrive.
pub(crate) type Sender = http1::SendRequest<ClientBody>;

/// Idle connections to one instance.
pub(crate) struct Pool {
    addr: SocketAddr,
    idle: Mutex<Vec<Sender>>,
    conns: Mutex<Vec<Conn>>,
    max_idle: usize,
}

impl Pool {
    pub(crate) fn new(addr: SocketAddr, max_idle: usize) -> Self {
        Pool {
            addr,
            idle: Mutex::new(Vec::new()),
            conns: Mutex::new(Vec::new()),
            max_idle,
        }
    }

    /// An idle connection ready for a request, or a new one.
    pub(crate) async fn get(&self, connect_timeout: Duration) -> io::Result<Sender> {
        if let Some(sender) = self.take_idle() {
            return Ok(sender);
        }
        let stream = connect(self.addr, connect_timeout).await?;
        handshake(stream, false).await
    }

    fn take_idle(&self) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap();
        idle.retain(|sender| !sender.is_closed());
        // A connection put back a moment ago may still be finishing its last response.
        let ready = idle.iter().rposition(|sender| sender.is_ready())?;
        Some(idle.swap_remove(ready))
    }

    /// An idle connection for the router's own client (`true`: it carried requests before),
    /// or a new one.
    pub(crate) async fn conn(&self, connect_timeout: Duration) -> io::Result<(Conn, bool)> {
        let idle = {
            let mut conns = self.conns.lock().unwrap();
            // The most recently used first: the least likely to have been closed by now.
            std::iter::from_fn(|| conns.pop()).find(Conn::is_usable)
        };
        match idle {
            Some(conn) => Ok((conn, true)),
            None => Ok((self.fresh(connect_timeout).await?, false)),
        }
    }

    /// A new connection for the router's own client.
    pub(crate) async fn fresh(&self, connect_timeout: Duration) -> io::Result<Conn> {
        Ok(Conn::new(connect(self.addr, connect_timeout).await?))
    }

    /// Takes back a connection of the router's own client whose response has ended.
    pub(crate) fn put_conn(&self, conn: Conn) {
        let mut conns = self.conns.lock().unwrap();
        if conns.len() < self.max_idle {
            conns.push(conn);
        }
    }

    /// Takes `sender` back once its response has been read to the end; it becomes usable as
    /// soon as its connection has finished with that response.
    pub(crate) fn put(&self, sender: Sender) {
        let mut idle = self.idle.lock().unwrap();
        if idle.len() < self.max_idle {
            idle.push(sender);
        }
    }
}

/// Opens a TCP connection to an instance at `addr`, the loopback address the supervisor
/// verified its own listener serves. Never another address: the same port at the other
/// loopback address may be another user's listener, which would then get the instance's
/// traffic.
pub(crate) async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let attempt = TcpStream::connect(addr);
    let stream = tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Starts HTTP/1.1 on `stream`; `upgrades` keeps the connection usable after a 101 response.
pub(crate) async fn handshake(stream: TcpStream, upgrades: bool) -> io::Result<Sender> {
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    if upgrades {
        tokio::spawn(connection.with_upgrades());
    } else {
        tokio::spawn(connection);
    }
    Ok(sender)
}
