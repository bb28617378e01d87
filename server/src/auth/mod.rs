//! Authentication: password hashing (and, with sign-in, tokens and sessions).

pub mod password;
