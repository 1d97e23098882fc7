//! Reverse-mode automatic differentiation on a tape, with higher-order gradients.
//!
//! A [`Tape`] records every operation of one forward pass as a node holding its value.
//! [`Tape::backward`] walks the nodes in reverse and returns plain tensors; nothing is
//! recorded, so first-order training pays nothing for higher-order support.
//! [`Tape::grad`] with `create_graph = true` instead records the gradient computation on
//! the same tape, so the gradients are ordinary [`Var`]s that can be differentiated again
//! (as `torch.autograd.grad(..., create_graph=True)`).
//!
//! Each op's backward is written once, against the (crate-internal) `GradAlgebra` trait, and
//! is interpreted either on raw tensors or by recording onto the tape.

pub(crate) mod algebra;
pub(crate) mod op;
mod tape;

pub(crate) use tape::NodeId;
pub use tape::{Gradients, Tape, Var};
