//! The router in-process, against real HTTP servers on loopback ports standing in for
//! instances, and real clients.

mod balance;
mod conformance;
mod failover;
mod framing;
mod hardening;
mod headers;
mod pool_safety;
mod queue;
mod slots;
mod smuggling;
mod streaming;
mod support;
