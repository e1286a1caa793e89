//! Non-INVITE client transaction (RFC 3261 §17.1.2) for the requests we send in a dialog (BYE,
//! REFER): retransmits over UDP (Timer E), gives up after 64·T1 (Timer F), absorbs retransmitted
//! final responses (Timer K). Pure: the server sends what it returns and calls back at
//! [`NonInviteClientTransaction::deadline`].

use std::time::{Duration, Instant};

use super::message::{Request, Response};
use super::transaction::Timers;

/// What the client transaction tells its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOutput {
    /// Send (or re-send) these bytes to the request's destination.
    Send(Vec<u8>),
    /// A provisional response arrived.
    Provisional(Response),
    /// The final response arrived (reported once).
    Final(Response),
    /// No final response within 64·T1: treat as `408 Request Timeout`.
    TimedOut,
}

#[derive(Debug, Clone)]
enum State {
    Trying { next: Instant, interval: Duration, end: Instant },
    Proceeding { next: Instant, end: Instant },
    Completed { end: Instant },
    Terminated,
}

/// One request we sent, until its final response.
#[derive(Debug, Clone)]
pub struct NonInviteClientTransaction {
    timers: Timers,
    branch: String,
    method: String,
    bytes: Vec<u8>,
    state: State,
}

impl NonInviteClientTransaction {
    /// Starts the transaction; the returned [`ClientOutput::Send`] is the first transmission.
    pub fn start(request: &Request, timers: Timers, now: Instant) -> (Self, ClientOutput) {
        let branch = request.headers.top_via().ok().and_then(|v| v.branch().map(str::to_owned)).unwrap_or_default();
        let bytes = request.to_bytes();
        let tx = NonInviteClientTransaction {
            timers,
            branch,
            method: request.method.as_str().to_owned(),
            bytes: bytes.clone(),
            state: State::Trying {
                next: now + timers.t1,
                interval: timers.t1,
                end: now + timers.transaction_timeout(),
            },
        };
        (tx, ClientOutput::Send(bytes))
    }

    /// Whether `response` belongs to this transaction (RFC 3261 §17.1.3: top Via branch and CSeq
    /// method).
    pub fn matches(&self, response: &Response) -> bool {
        let branch = response.headers.top_via().ok().and_then(|v| v.branch().map(str::to_owned));
        let method = response.headers.cseq().ok().map(|c| c.method.as_str().to_owned());
        branch.as_deref() == Some(self.branch.as_str()) && method.as_deref() == Some(self.method.as_str())
    }

    /// A response for this transaction arrived.
    pub fn on_response(&mut self, response: Response, now: Instant) -> Option<ClientOutput> {
        match self.state {
            State::Trying { end, .. } | State::Proceeding { end, .. } => {
                if response.is_provisional() {
                    self.state = State::Proceeding { next: now + self.timers.t2, end };
                    Some(ClientOutput::Provisional(response))
                } else {
                    self.state = State::Completed { end: now + self.timers.t4 };
                    Some(ClientOutput::Final(response))
                }
            }
            State::Completed { .. } | State::Terminated => None,
        }
    }

    /// When [`Self::on_timeout`] next has work; `None` once terminated.
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Trying { next, end, .. } | State::Proceeding { next, end } => Some(next.min(end)),
            State::Completed { end } => Some(end),
            State::Terminated => None,
        }
    }

    pub fn is_terminated(&self) -> bool {
        matches!(self.state, State::Terminated)
    }

    /// Fires Timers E, F and K.
    pub fn on_timeout(&mut self, now: Instant) -> Vec<ClientOutput> {
        let mut out = Vec::new();
        match &mut self.state {
            State::Trying { end, .. } | State::Proceeding { end, .. } if now >= *end => {
                self.state = State::Terminated;
                out.push(ClientOutput::TimedOut);
            }
            // One send per call even when called late (no bursts); the schedule stays on its grid.
            State::Trying { next, interval, .. } => {
                if *next <= now {
                    out.push(ClientOutput::Send(self.bytes.clone()));
                }
                while *next <= now {
                    *interval = (*interval * 2).min(self.timers.t2);
                    *next += *interval;
                }
            }
            State::Proceeding { next, .. } => {
                if *next <= now {
                    out.push(ClientOutput::Send(self.bytes.clone()));
                }
                while *next <= now {
                    *next += self.timers.t2;
                }
            }
            State::Completed { end } if now >= *end => self.state = State::Terminated,
            _ => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{response_to, Method};

    fn bye() -> Request {
        Request::new(Method::Bye, "sip:a@10.0.0.1")
            .with_header("Via", "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKbye;rport")
            .with_header("From", "<sip:s@10.0.0.2>;tag=l")
            .with_header("To", "<sip:a@x>;tag=r")
            .with_header("Call-ID", "c")
            .with_header("CSeq", "1 BYE")
    }

    #[test]
    fn retransmits_until_timeout() {
        let t0 = Instant::now();
        let (mut tx, first) = NonInviteClientTransaction::start(&bye(), Timers::default(), t0);
        assert!(matches!(first, ClientOutput::Send(_)));
        let mut sends = Vec::new();
        while let Some(d) = tx.deadline() {
            for o in tx.on_timeout(d) {
                sends.push(((d - t0).as_millis(), matches!(o, ClientOutput::TimedOut)));
            }
        }
        let times: Vec<u128> = sends.iter().map(|s| s.0).collect();
        assert_eq!(&times[..5], &[500, 1500, 3500, 7500, 11500]);
        assert_eq!(sends.last(), Some(&(32000, true)));
    }

    #[test]
    fn final_response_reported_once() {
        let t0 = Instant::now();
        let (mut tx, _) = NonInviteClientTransaction::start(&bye(), Timers::default(), t0);
        let ok = response_to(&bye(), 200, "r");
        assert!(tx.matches(&ok));
        assert!(matches!(tx.on_response(ok.clone(), t0), Some(ClientOutput::Final(_))));
        assert_eq!(tx.on_response(ok, t0), None);
        assert!(tx.on_timeout(t0 + Duration::from_secs(5)).is_empty());
        assert!(tx.is_terminated());
    }
}
