//! The client side: connect to a formation's control socket and exchange one request.
//!
//! Before talking, the client checks that the socket and its directory belong to this user:
//! a socket another user put in the way could otherwise show `shoal ps` a made-up formation
//! or take `shoal stop` for granted.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::protocol::{Request, RequestError, Response};

/// Why a request could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no formation is running for this Procfile (no control socket at `{}`); start one with `shoal start`", path.display())]
    NotRunning { path: PathBuf },
    #[error("no formation is running for this Procfile: `{}` was left by a shoal that was killed (it is replaced at the next `shoal start`)", path.display())]
    Stale { path: PathBuf },
    #[error("refusing to talk to `{}`: {reason}", path.display())]
    Unsafe { path: PathBuf, reason: String },
    #[error("cannot talk to the formation at `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The formation answered, and did not do what was asked.
    #[error(transparent)]
    Refused(#[from] RequestError),
}

/// A connection to a formation's control socket.
pub struct Client {
    stream: BufReader<UnixStream>,
    path: PathBuf,
}

impl Client {
    /// Connects to the socket at `path` once it is known to be this user's own.
    pub async fn connect(path: &Path) -> Result<Client, ClientError> {
        let socket = checked(path)?;
        match UnixStream::connect(&socket).await {
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

    /// Sends `request` and waits for its response; a refusal is an error
    /// ([`ClientError::Refused`]) that says whether the request was wrong.
    pub async fn ask(&mut self, request: &Request) -> Result<Response, ClientError> {
        Ok(self.send(request).await?.into_result()?)
    }

    /// Sends `request` and waits for its response, whatever it says.
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

/// `path` with its directory resolved, once the socket and that directory are known to belong
/// to this user (and the directory to be writable by nobody else, so the socket cannot be
/// swapped between this check and the connect).
fn checked(path: &Path) -> Result<PathBuf, ClientError> {
    let unsafe_path = |reason: String| ClientError::Unsafe {
        path: path.to_path_buf(),
        reason,
    };
    let io_error = |source: io::Error| {
        if source.kind() == io::ErrorKind::NotFound {
            ClientError::NotRunning {
                path: path.to_path_buf(),
            }
        } else {
            ClientError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    };
    let Some(name) = path.file_name() else {
        return Err(unsafe_path("it does not name a socket".into()));
    };
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    // Links in the directory's path are resolved once, here: the connect below goes to the
    // directory that was checked, whatever they point to later.
    let directory = std::fs::canonicalize(directory).map_err(io_error)?;
    let own = shoal_supervisor::scratch::effective_uid();
    let dir_meta = std::fs::metadata(&directory).map_err(io_error)?;
    if dir_meta.uid() != own && dir_meta.uid() != 0 {
        return Err(unsafe_path(format!(
            "its directory `{}` belongs to another user (uid {})",
            directory.display(),
            dir_meta.uid()
        )));
    }
    if dir_meta.mode() & 0o022 != 0 {
        return Err(unsafe_path(format!(
            "other users can write to its directory `{}`",
            directory.display()
        )));
    }
    let socket = directory.join(name);
    let meta = std::fs::symlink_metadata(&socket).map_err(io_error)?;
    if meta.file_type().is_symlink() {
        return Err(unsafe_path("it is a symbolic link".into()));
    }
    if !meta.file_type().is_socket() {
        return Err(unsafe_path("it is not a socket".into()));
    }
    if meta.uid() != own {
        return Err(unsafe_path(format!(
            "it belongs to another user (uid {}); only the user who started a formation can \
             control it",
            meta.uid()
        )));
    }
    Ok(socket)
}
