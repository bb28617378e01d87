//! Authentication: password hashing, access tokens, sessions and refresh tokens.

pub mod http;
pub mod password;
pub mod sessions;
pub mod tokens;
