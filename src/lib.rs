//! # skillit
//!
//! A research harness for the synthetic experiments of *Skill-it! A Data-Driven Skills Framework for
//! Understanding and Training Language Models* (Chen et al., NeurIPS 2023): skill-structured
//! datasets, models trained on mixtures of skills, mixture methods, sweeps and statistics.
//!
//! Data flows one way: task → data → model → train → method → sweep → results → stats → report. The
//! task generators live in the crate [`skillit_synthetic`], re-exported here as [`synthetic`].

pub mod common;
pub mod config;
pub mod data;
pub mod device;
pub mod error;
pub mod graph;
pub mod graph_learn;
pub mod method;
pub mod model;
pub mod pretrain;
pub mod train;

pub use error::{Error, Result};
pub use skillit_synthetic as synthetic;
pub mod claims;
pub mod report;
pub mod results;
pub mod stats;
pub mod sweep;
