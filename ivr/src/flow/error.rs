//! Why a flow was refused, worded for the administrator who edited `config/ivr.toml`.

/// A flow that cannot be used. Every message names the file, and the node when there is one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FlowError {
    #[error("{file}:{line}:{column}: invalid flow TOML: {message}")]
    Toml { file: String, line: usize, column: usize, message: String },
    #[error("{file}: node `{node}`: {problem}")]
    Node { file: String, node: String, problem: NodeProblem },
    #[error("{file}: {reason}")]
    Flow { file: String, reason: String },
    #[error("{file}: language `{language}`: {texts} lacks prompts the flow names: {}", missing.join(", "))]
    MissingPrompts { file: String, language: String, texts: String, missing: Vec<String> },
}

/// What is wrong with one node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeProblem {
    #[error("`{field}` names unknown prompt id `{prompt}` (not defined in every language's .ftl files)")]
    UnknownPrompt { field: &'static str, prompt: String },
    #[error("`{field}` points to `{target}`, which is not a node")]
    UnknownTarget { field: &'static str, target: String },
    #[error("unreachable: no path leads to it from the start node `{start}`")]
    Unreachable { start: String },
    #[error("no way out: {0}")]
    NoWayOut(String),
    #[error("digit {digit} is mapped twice ({first} and {second})")]
    DigitMappedTwice { digit: String, first: String, second: String },
    #[error("digit {digit:?} cannot be used here: {why}")]
    BadDigit { digit: String, why: &'static str },
    #[error("{0}")]
    Invalid(String),
}
