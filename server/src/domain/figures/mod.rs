//! The managers' figures, computed from fact rows with no I/O: calendar days
//! ([`dates`]), the facts kept for each visit, order and job ([`facts`]), and
//! the figures over a range ([`kpis`]). Definitions are in `docs/kpis.md`.

pub mod dates;
pub mod facts;
pub mod kpis;

pub use kpis::{Figures, JobFigures, OrderValue, RepFigures, VisitFigures};
