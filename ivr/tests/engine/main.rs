//! Integration tests of the voice-menu engine: whole calls scripted through the default flow,
//! random calls (property tests), flow validation and the prompt texts.

mod dsl;
mod eleventh;
mod listening;
mod prompt_texts;
mod properties;
mod scripts;
mod texts;
mod validation;
