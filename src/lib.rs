//! Duststack: turns an inventory into a working multi-node cluster.
//!
//! The engine reads Ansible-compatible inventories ([`inventory`]), loads plays and roles
//! ([`playbook`]), renders Jinja templates with Ansible's filters ([`template`]), and runs
//! modules ([`modules`]) over one reused SSH connection per host ([`connection`]),
//! hosts in parallel ([`exec`]), printing through one printer ([`output`]).

pub mod cli;
pub mod connection;
pub mod data;
pub mod exec;
pub mod facts;
pub mod image;
pub mod inventory;
pub mod lab;
pub mod modules;
pub mod output;
pub mod pki;
pub mod playbook;
pub mod template;
pub mod testbed;
