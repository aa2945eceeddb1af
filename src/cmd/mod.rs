//! One module per subcommand: clap arguments and a `run` function.

pub mod demo;
pub mod evaluate;
pub mod inspect;
pub mod model;
pub mod plan;
pub mod predict;
pub mod synth;
pub mod train;
