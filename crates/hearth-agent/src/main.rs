//! The guest's init and agent.

fn main() {}
