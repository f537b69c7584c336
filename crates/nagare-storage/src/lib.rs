//! nagare-storage
