//! The engine's `Action::SendText` as the adapters hand it on: a [`TextOrder`] (the services,
//! the language, the call and its sealed number) to a [`TextSender`], which answers with the
//! event the engine waits for (`TextSent` or `TextFailed`). The sender itself (the trunk's
//! `MESSAGE`, the carrier's messages API) is the `texts` feature, given to the adapters by
//! `startup`: this trait keeps the adapters from depending on it.

use super::sealed::SealedNumber;
use ivr::domain::{CallId, Language, PromptId};
use ivr::engine::{Channel, Event};
use std::future::Future;
use std::pin::Pin;

/// An operator's text request waiting for the node that holds its call (`text_messages.status`).
pub const PENDING: &str = "pending";
/// An operator's text request claimed by the node that holds its call, on its way.
pub const SENDING: &str = "sending";

/// What to send, for one call.
#[derive(Debug, Clone)]
pub struct TextOrder {
    pub call_id: CallId,
    /// The channel the call came from (with `HELPLINE_SMS_VIA`, it chooses the sender).
    pub channel: Channel,
    /// The caller's number, sealed for this call: opened by the sender only to send.
    pub number: Option<SealedNumber>,
    /// Directory ids, as just read.
    pub services: Vec<String>,
    pub language: Language,
    pub item_prompt: PromptId,
    pub portal_prompt: PromptId,
    /// The server's public base URL as the carrier reaches it (for the messages API's status
    /// callback); `None`: the configured `public_url`.
    pub base_url: Option<String>,
}

/// The event a text's sending ends in.
pub type TextFuture = Pin<Box<dyn Future<Output = Event> + Send>>;

/// Sends the services of a [`TextOrder`]; the future ends in `Event::TextSent` or
/// `Event::TextFailed` (with a plain reason), never an error.
pub trait TextSender: Send + Sync {
    fn send(&self, order: TextOrder) -> TextFuture;

    /// Carries out an operator's text `request` (a `text_messages` row left `pending` by the
    /// operator's node, and claimed by this one, which holds the call and its sealed `number`):
    /// sends it and writes the outcome into that row.
    fn carry_out(&self, request: i64, call_id: CallId, number: Option<SealedNumber>) -> CarryOut;

    /// Whether this node sends texts at all: one that does not leaves operators' requests
    /// unclaimed (the operator's node then says why), rather than claiming what it cannot send.
    fn sends(&self) -> bool {
        true
    }
}

/// The sending of an operator's text request; its outcome is in its row.
pub type CarryOut = Pin<Box<dyn Future<Output = ()> + Send>>;

/// No texts (`HELPLINE_SMS_VIA` empty): the flow offers none, so an order only comes from a
/// state stored by another configuration; it fails at once and the caller hears the menu again.
pub struct NoTexts;

impl TextSender for NoTexts {
    fn send(&self, _: TextOrder) -> TextFuture {
        Box::pin(async { Event::TextFailed { reason: "this server sends no text messages".into() } })
    }

    /// Never claimed ([`TextSender::sends`]): left `pending`, the operator's node gives up on
    /// it and says why.
    fn carry_out(&self, _: i64, _: CallId, _: Option<SealedNumber>) -> CarryOut {
        Box::pin(async {})
    }

    fn sends(&self) -> bool {
        false
    }
}
