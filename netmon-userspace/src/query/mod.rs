//! Queries over the history store: time windows, group-by, filters, series.
//! Returns plain data ([`crate::store`] types plus the small types here);
//! turning it into JSON documents is [`crate::api::handler`]'s job, and
//! formatting text is the CLI's.
//!
//! Built on the store's public read pieces ([`crate::store::query::plan`],
//! the table layouts in [`crate::store::layout`]) rather than on
//! [`crate::store::Store::totals`]: the CLI groups by dimensions the store
//! does not know (user, cgroup, container, port, protocol, config-mapped app
//! names) and filters by any of them, so the scans here hand every row to a
//! predicate ([`scan`]) and the grouping happens above it ([`usage`],
//! [`series`]).
pub mod apps;
pub mod domains;
pub mod edges;
pub mod facts;
pub mod ifaces;
pub mod quality;
pub mod scan;
pub mod series;
pub mod sockets;
pub mod terms;
pub mod usage;
pub mod window;

pub use apps::{AppRule, AppRules};
pub use facts::{Facts, ProcFacts};
pub use terms::{Dimension, FilterKey, FilterTerm, GroupKey};

use crate::store::StoreError;

/// Errors of a query.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The request cannot be answered as asked (the message says why and
    /// what to ask instead).
    #[error("{0}")]
    Invalid(String),
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<crate::store::layout::LayoutError> for QueryError {
    fn from(e: crate::store::layout::LayoutError) -> Self {
        Self::Store(e.into())
    }
}

macro_rules! redb_into_query {
    ($($t:ty),*) => {$(
        impl From<$t> for QueryError {
            fn from(e: $t) -> Self {
                Self::Store(StoreError::Db(e.into()))
            }
        }
    )*};
}
redb_into_query!(redb::TransactionError, redb::TableError, redb::StorageError);
