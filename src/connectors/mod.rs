//! Connector framework (see issue 3).
