//! Shared pieces of skiff's benchmarks (the binaries live in `src/bin/`).
//!
//! Every benchmark that starts a cluster runs it inside a network namespace it makes
//! itself ([`netns`]), measures skiff and its floor side by side in the same run
//! ([`stats`]), and records the table it printed in `docs/benchmarks.md` ([`report`]).
//! [`client`] is a minimal HTTPS client for the API server.

pub mod apiserver;
pub mod client;
pub mod logging;
pub mod netns;
pub mod report;
pub mod runtime;
pub mod stats;
