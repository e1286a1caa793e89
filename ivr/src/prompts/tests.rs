//! Tests of the prompt tooling.
