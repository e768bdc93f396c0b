//! The command line (moved here from main.rs in the next step).
