//! One module per subcommand: clap arguments and a `run` function.

pub mod evaluate;
pub mod inspect;
pub mod model;
pub mod synth;
