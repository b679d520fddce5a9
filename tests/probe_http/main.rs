//! `tenantguard probe http` against the reference server (clean) and against two test
//! servers of other styles, each correct and with each planted bug.

mod planted;
mod reference;
mod servers;
mod support;
