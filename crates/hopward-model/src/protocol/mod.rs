//! The ssh-agent protocol: length-prefixed frames, requests decoded into
//! types, and replies. No decisions are made here.

pub mod control;
pub mod frame;
pub mod reply;
pub mod request;
