//! One module per subcommand (clap arguments and a `run` function), and the argument groups
//! they share.

pub mod args;
pub mod bench;
pub mod demo;
pub mod devices;
pub mod evaluate;
pub mod inspect;
pub mod inspect_network;
pub mod plan;
pub mod predict;
pub mod predict_output;
pub mod synth;
pub mod train;
