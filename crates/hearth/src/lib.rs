//! What the `hearth` binary shares with other programs and tests: the
//! client of `hearth serve` ([`client`]).

#![forbid(unsafe_code)]

pub mod client;
