//! The Sonde agent library.
