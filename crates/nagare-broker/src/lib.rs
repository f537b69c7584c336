//! nagare-broker
