//! shoal-kit: what a Rust web app needs to keep nothing that must outlive a request.
//!
//! - [`SessionLayer`] and [`Session`]: server-side sessions in Redis/Valkey, Memcached,
//!   PostgreSQL or SQLite, chosen by a URL (`SESSION_URL`), with an idle timeout and an absolute
//!   lifetime enforced by the store, and **no lost updates** between processes.
//! - [`Scratch`]: a per-transaction temporary directory that is removed when dropped.
//! - [`listen`]: bind `127.0.0.1:$PORT` (`SHOAL_LISTEN_HOST` for another address);
//!   [`shutdown_signal`]: SIGTERM/SIGINT for graceful shutdown.
//! - [`sqlite::connect_pool`]: open an SQLite file that several processes open at once.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use shoal_kit::{Session, SessionConfig, SessionLayer, SessionStore, StoreOptions};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = SessionStore::from_env("sqlite:///var/lib/app/sessions.db", StoreOptions::default()).await?;
//! let app = Router::new()
//!     .route("/", get(|session: Session| async move {
//!         let n: u64 = session.get("visits")?.unwrap_or(0);
//!         session.insert("visits", n + 1)?;
//!         Ok::<_, shoal_kit::SessionError>(format!("visit {}", n + 1))
//!     }))
//!     .layer(SessionLayer::new(store, SessionConfig::default()));
//! let listener = shoal_kit::listen(3000).await?;
//! axum::serve(listener, app).with_graceful_shutdown(shoal_kit::shutdown_signal()).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - `session`: the per-request [`Session`] handle and the change log it keeps.
//! - `layer`: the tower layer: loads before the handler, saves after it (compare-and-set loop).
//! - `record`: the stored record and the expiry arithmetic.
//! - `store`: the store front ([`SessionStore`]) and one module per backend.
//! - `id`, `cookie`: session ids and the `Cookie`/`Set-Cookie` headers.
//! - `scratch`, `listen`, `shutdown`, `sqlite`: the rest of a stateless process.

mod config;
mod cookie;
mod error;
mod id;
mod layer;
mod listen;
mod record;
mod scratch;
mod session;
mod shutdown;
pub mod sqlite;
mod store;

pub use config::{SameSite, SecurePolicy, SessionConfig};
pub use error::{ConnectError, SessionError, StoreError};
pub use layer::{SessionLayer, SessionService};
pub use listen::{ListenError, listen};
pub use scratch::Scratch;
pub use session::Session;
pub use shutdown::shutdown_signal;
pub use store::{SessionStore, StoreOptions, mask_url};
