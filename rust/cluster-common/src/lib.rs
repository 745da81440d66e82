//! What the cluster's binaries and the test kit share (not published; not the client's API):
//! - [`dataset`]: the generated Parquet tables every workload queries, the distributed
//!   session's settings for them, single-node reference answers, and the tasks per stage of a
//!   plan. The coordinator binary and `worker-resolver-test-support` both write and read these
//!   tables, so their queries and the workers' files stay in step by construction.
//! - [`flags`]: the duration syntax of the binaries' flags.
#![deny(missing_docs)]

pub mod dataset;
pub mod flags;
