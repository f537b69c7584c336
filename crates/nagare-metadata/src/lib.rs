//! nagare-metadata
