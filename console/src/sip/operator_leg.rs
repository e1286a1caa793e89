//! A carrier's transfer to an operator who answers in the browser: an INVITE to
//! `sip:op-<user>@<this node>;token=<token>` (`media::browser_target`), whose token the console
//! handed out when the operator accepted a JSON-webhook or TwiML call. It is not a new caller:
//! it is the operator leg of the call it belongs to. The INVITE rings until the operator's
//! browser phone is connected, then is answered and bridged to it on the media thread; a browser
//! that does not connect in time (or fails, or does not come back after closing) gets the INVITE
//! refused (480), so the carrier reports the transfer failed and the engine puts the caller back
//! in the queue. The operator ending the call, handing the caller over to another queue, or the
//! carrier hanging up, ends the leg.
//!
//! The same address, with a callback's token, is how a carrier placing a callback (its REST
//! "create call", then `<Dial><Sip>` once the callee answers) reaches the operator: the browser
//! leg was built when the operator clicked "Call back" and is usually connected already; the
//! callback hands it over (`PhoneMsg::Leg`, replaying its `Connected`) once this leg is
//! registered, and it is bridged and answered at once. The operator's page closing ends such a
//! leg (there is no call to come back to).

use super::call::{CallMsg, SigCmd, BROWSER_CONNECT_TIMEOUT, BROWSER_RETURN_TIMEOUT};
use super::media::{Media, MediaCmd};
use crate::media::{CallbackClaim, LegEvent, LegHandle, MediaState, Phone, PhoneMsg, PhoneStatus};
use std::time::Instant;
use tokio::sync::mpsc;
use tracing::Instrument;

/// Everything the operator leg starts from.
pub struct OperatorLegSetup {
    pub sip_call_id: String,
    /// The engine id of the call this leg belongs to.
    pub call_id: String,
    pub media: Media,
    pub signalling: mpsc::UnboundedSender<SigCmd>,
    pub phone: Phone,
    /// A callback's browser leg claimed by this INVITE (`None`: a transfer of a caller).
    pub callback: Option<CallbackClaim>,
}

/// The token of a browser operator's address (`sip:op-…@…;token=…`), if the URI is one.
pub fn operator_token(uri: &str) -> Option<&str> {
    let rest = uri.strip_prefix("sip:")?;
    if !rest.starts_with("op-") {
        return None;
    }
    rest.split(';').skip(1).find_map(|p| p.strip_prefix("token="))
}

/// Starts the leg's task; the returned sender feeds it what the signalling task hears.
pub fn spawn(setup: OperatorLegSetup) -> mpsc::UnboundedSender<CallMsg> {
    let (tx, rx) = mpsc::unbounded_channel();
    let span = tracing::info_span!("operator_leg", call_id = %setup.call_id);
    tokio::spawn(run(setup, rx).instrument(span));
    tx
}

async fn run(setup: OperatorLegSetup, mut rx: mpsc::UnboundedReceiver<CallMsg>) {
    let OperatorLegSetup { sip_call_id, call_id, media, signalling, phone, callback } = setup;
    let mut phone_rx = phone.register(&call_id, media.codec());
    // Held until the leg ends: the callback hears it end when this is dropped.
    let callback_alive = callback.map(CallbackClaim::claimed);
    let mut leg: Option<LegHandle> = None;
    let mut answered = false;
    let mut bridged = false;
    let mut held = false;
    let started = Instant::now();
    let mut deadline = Some(started + BROWSER_CONNECT_TIMEOUT);
    tracing::info!("a carrier's transfer to the operator's browser: ringing until the page's phone connects");
    let failure: Option<String> = loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(CallMsg::Ack) => {
                    let _ = media.send(MediaCmd::Start);
                }
                Some(CallMsg::Gone) | None => {
                    tracing::info!("the carrier ended the operator leg");
                    phone.report(&call_id, PhoneStatus::HungUp, None);
                    break None;
                }
                Some(_) => {}
            },
            Some(msg) = phone_rx.recv() => match msg {
                PhoneMsg::Leg(new) => {
                    leg = Some(new);
                    bridged = false;
                    deadline = Some(Instant::now() + BROWSER_CONNECT_TIMEOUT);
                    phone.report(&call_id, PhoneStatus::Connecting, None);
                }
                PhoneMsg::Reoffer { offer, reply } => {
                    let answer = match &leg {
                        Some(l) => l.reoffer(offer).await,
                        None => Err(crate::media::WebRtcError::Ended),
                    };
                    let _ = reply.send(answer);
                }
                PhoneMsg::Hold(on) => {
                    held = on;
                    if let Some(l) = &leg {
                        l.hold(on);
                    }
                    if bridged {
                        let _ = media.send(MediaCmd::Hold(on));
                        if !on {
                            let _ = media.send(MediaCmd::StopAudio);
                        }
                    }
                }
                PhoneMsg::Hangup => {
                    tracing::info!("the operator ended the call");
                    phone.report(&call_id, PhoneStatus::Ended, None);
                    break None;
                }
                PhoneMsg::HandOver(new) => {
                    tracing::info!("the operator left: the mediator's leg carries the call");
                    leg = Some(new);
                    deadline = None;
                }
                PhoneMsg::Requeue { reply, .. } => {
                    // The server recorded the hand-over: the carrier, told by our BYE, reports
                    // the transfer over and gets the queue's actions.
                    tracing::info!("the operator handed the caller over to another queue");
                    phone.report(&call_id, PhoneStatus::Ended, None);
                    let _ = reply.send(true);
                    break None;
                }
                PhoneMsg::PageFailed(reason) => break Some(reason),
            },
            event = next_leg_event(&mut leg) => match event {
                Some(LegEvent::State(MediaState::Connected)) => {
                    deadline = None;
                    if !bridged {
                        match media.sip_side() {
                            Ok(side) => {
                                media.bridged(true);
                                if let Some(l) = &leg {
                                    l.bridge(side);
                                    l.hold(held);
                                }
                                bridged = true;
                            }
                            Err(e) => tracing::error!(error = %e, "cannot bridge the operator leg's RTP"),
                        }
                    }
                    if !answered {
                        answered = true;
                        phone.connected_after(started);
                        let _ = signalling.send(SigCmd::Answer { sip_call_id: sip_call_id.clone() });
                        tracing::info!("operator leg answered and bridged to the browser");
                    }
                    phone.report(&call_id, PhoneStatus::Connected, None);
                }
                Some(LegEvent::State(MediaState::Reconnecting)) => {
                    phone.report(&call_id, PhoneStatus::Reconnecting, None);
                }
                Some(LegEvent::State(MediaState::Failed(f))) => break Some(format!("{f:?}")),
                Some(LegEvent::State(MediaState::Closed)) if callback_alive.is_some() => {
                    tracing::info!("the operator's page closed: the callback is over");
                    phone.report(&call_id, PhoneStatus::Ended, None);
                    break None;
                }
                Some(LegEvent::State(MediaState::Closed)) => {
                    leg = None;
                    bridged = false;
                    deadline = Some(Instant::now() + BROWSER_RETURN_TIMEOUT);
                    phone.report(&call_id, PhoneStatus::Reconnecting, None);
                }
                Some(_) => {}
                None => leg = None,
            },
            _ = sleep_until_opt(deadline) => {
                break Some(if leg.is_none() { "the page sent no offer in time".into() } else { "not connected in time".into() });
            }
        }
    };
    drop(leg);
    media.bridged(false);
    let _ = media.send(MediaCmd::Stop);
    if let Some(reason) = failure {
        tracing::warn!(%reason, "the operator's browser phone failed: the carrier's transfer is refused");
        phone.failed(super::call::failure_code(&reason));
        phone.report(&call_id, PhoneStatus::Failed, Some(reason));
    }
    let _ = if answered {
        signalling.send(SigCmd::Hangup { sip_call_id })
    } else {
        signalling.send(SigCmd::Reject { sip_call_id, status: 480 })
    };
    phone.unregister(&call_id);
    drop(callback_alive);
}

async fn next_leg_event(leg: &mut Option<LegHandle>) -> Option<LegEvent> {
    match leg {
        Some(leg) => leg.events.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_operator_addresses_with_a_token_are_operator_legs() {
        assert_eq!(operator_token("sip:op-anna@192.0.2.1:5080;token=abc"), Some("abc"));
        assert_eq!(operator_token("sip:op-anna@192.0.2.1:5080;transport=udp;token=abc"), Some("abc"));
        assert_eq!(operator_token("sip:op-anna@192.0.2.1:5080"), None);
        assert_eq!(operator_token("sip:803001@192.0.2.1:5080;token=abc"), None);
    }
}
