//! The client side: connect to a formation's control socket and exchange one request.

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::protocol::{Request, Response};

/// Why a request could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no formation is running for this Procfile (no control socket at `{}`); start one with `shoal start`", path.display())]
    NotRunning { path: PathBuf },
    #[error("no formation is running for this Procfile: `{}` was left by a shoal that was killed (it is replaced at the next `shoal start`)", path.display())]
    Stale { path: PathBuf },
    #[error("cannot talk to the formation at `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A connection to a formation's control socket.
pub struct Client {
    stream: BufReader<UnixStream>,
    path: PathBuf,
}

impl Client {
    pub async fn connect(path: &Path) -> Result<Client, ClientError> {
        match UnixStream::connect(path).await {
            Ok(stream) => Ok(Client {
                stream: BufReader::new(stream),
                path: path.to_path_buf(),
            }),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Err(ClientError::NotRunning {
                path: path.to_path_buf(),
            }),
            Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => Err(ClientError::Stale {
                path: path.to_path_buf(),
            }),
            Err(source) => Err(ClientError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Sends `request` and waits for its response.
    pub async fn send(&mut self, request: &Request) -> Result<Response, ClientError> {
        let io_error = |source| ClientError::Io {
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_string(request).map_err(|e| io_error(io::Error::other(e)))?;
        line.push('\n');
        self.stream
            .get_mut()
            .write_all(line.as_bytes())
            .await
            .map_err(io_error)?;
        let mut answer = String::new();
        let read = self.stream.read_line(&mut answer).await.map_err(io_error)?;
        if read == 0 {
            return Err(io_error(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the formation closed the connection (it is shutting down)",
            )));
        }
        serde_json::from_str(&answer).map_err(|e| io_error(io::Error::other(e)))
    }
}
