//! nagare-client
