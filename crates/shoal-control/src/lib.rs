//! The control socket: a running formation listens on a unix socket (mode 0600, in its runtime
//! directory) and other terminals or scripts steer it through `shoal ps`, `scale`, `restart` and
//! `stop`. The protocol is one JSON object per line each way ([`protocol`]), documented in the
//! README so that other tools can use it.
//!
//! Only the user who started the formation may use it: the server binds only inside a
//! directory private to that user and answers only peers of that uid (`SO_PEERCRED`); the
//! client talks only to a socket that user owns, in a directory nobody else can write to.
//!
//! The server ([`server`]) turns requests into the supervisor's primitives (add an instance,
//! drain one, retire one) and, for rolling restarts and scale-downs, waits on the router's
//! request counts so that no request is cut off. The client ([`client`]) is what the `shoal`
//! subcommands use.

pub mod chaos;
pub mod client;
pub mod idle;
pub mod metrics;
pub mod protocol;
pub mod server;

pub use chaos::ChaosSpec;
pub use client::{Client, ClientError};
pub use idle::RouterIdle;
pub use protocol::{InstanceStatus, Request, RequestError, Response};
pub use server::{BindError, ControlServer};
