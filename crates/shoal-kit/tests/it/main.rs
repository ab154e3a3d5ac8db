//! Integration tests of shoal-kit, as one test binary. Every store is tested against its real
//! server; a store whose URL variable is unset is reported as NOT RUN on stderr.

mod connect;
mod ifaddrs;
mod listen;
mod scratch;
mod sessions;
mod sql_table;
mod support;
