//! Integration tests: the real `shoal` binary against controllable fake children
//! (`shoal-fake`), each test in a temporary app directory.

mod check;
mod control;
mod export;
mod isolate;
mod memory;
mod metrics;
mod ports;
mod queue;
mod readme;
mod router;
mod run;
mod start;
mod stop;
mod support;
mod swarm;
mod verify;
