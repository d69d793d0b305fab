//! ze's configuration: the brace format and its typed views.

pub mod brace;
pub mod schema;
