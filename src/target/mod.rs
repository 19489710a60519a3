//! What tsxfer keeps in the target: the run state (schema `tsxfer`), and `--restart`,
//! which removes what an unfinished run left there.

pub mod reset;
pub mod state;
