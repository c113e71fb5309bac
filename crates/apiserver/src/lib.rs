//! The skiff API server: Kubernetes-compatible REST over the skiff store.
//!
//! Start at [`server::start`]: it makes the credentials ([`pki`]), binds the
//! listener and serves [`server`]'s dispatcher, which parses a URL into a
//! [`request::Target`] and runs one verb from [`rest`], [`patch`], [`delete`] or
//! [`watch`]. Objects reach the store only through [`objects::Objects`];
//! [`strategy`] is what the server does to an object before storing it.

pub mod apiservices;
pub mod audit;
pub mod authn;
pub mod authz;
pub mod body;
pub mod cache;
pub mod component_certs;
pub mod convert;
pub mod crd;
pub mod csr;
pub mod delete;
pub mod discovery;
pub mod eviction;
pub mod health;
pub mod join;
pub mod managed;
pub mod metrics;
pub mod namespace_cache;
pub mod namespaces;
pub mod node_restriction;
pub mod objects;
pub mod openapi;
pub mod openapi_schemas;
pub mod openapi_v2;
pub mod patch;
pub mod pki;
pub mod podstream;
pub mod portforward;
pub mod proxy;
pub mod rbac;
pub mod rbac_components;
pub mod request;
pub mod response;
pub mod rest;
pub mod sa_admission;
pub mod server;
pub mod server_join;
pub mod serviceaccount;
pub mod services;
pub mod strategy;
pub mod watch;
pub mod x509;

pub use server::{start, AdmissionSettings, Config, Running};
