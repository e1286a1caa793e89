//! Server transactions (RFC 3261 §17.2, with RFC 6026's "Accepted" state for 2xx): the layer that
//! absorbs retransmitted requests, retransmits our responses over UDP, and matches ACK and CANCEL.
//!
//! Driven as a pure state machine: the server calls [`ServerTransactions::on_request`],
//! [`ServerTransactions::respond`] and, when [`ServerTransactions::next_deadline`] passes,
//! [`ServerTransactions::on_timeout`], each with `now`; each returns [`ServerOutput`]s (responses
//! to send, requests and events for the user agent). `P` is the peer address type (the server uses
//! `SocketAddr`); it is only carried back in [`ServerOutput::Send`].

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use super::builder::response_to;
use super::header_values::BRANCH_MAGIC_COOKIE;
use super::ids::IdGen;
use super::message::{ParseError, Request, Response};
use super::method::Method;

/// RFC 3261 timer base values (§17.1.1.1, table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// Round-trip estimate; 500 ms.
    pub t1: Duration,
    /// Maximum retransmission interval; 4 s.
    pub t2: Duration,
    /// Maximum time a message stays in the network; 5 s.
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers { t1: Duration::from_millis(500), t2: Duration::from_secs(4), t4: Duration::from_secs(5) }
    }
}

impl Timers {
    /// 64·T1: Timers B, F, H, J and L (32 s by default).
    pub fn transaction_timeout(&self) -> Duration {
        self.t1 * 64
    }
}

/// Identifies a server transaction (RFC 3261 §17.2.3): the top Via's branch and sent-by, and the
/// method (ACK counts as INVITE). For RFC 2543 clients without the magic cookie, the branch is
/// replaced by Call-ID, CSeq number and From tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TxKey {
    branch: String,
    sent_by: String,
    method: Method,
}

impl TxKey {
    pub fn for_request(req: &Request) -> Result<TxKey, ParseError> {
        let via = req.headers.top_via()?;
        let method = match req.method {
            Method::Ack => Method::Invite,
            ref m => m.clone(),
        };
        let branch = match via.branch() {
            Some(b) if b.starts_with(BRANCH_MAGIC_COOKIE) => b.to_owned(),
            _ => {
                let from_tag = req.headers.from_addr()?.tag().unwrap_or_default().to_owned();
                format!("rfc2543:{}:{}:{}", req.headers.call_id()?, req.headers.cseq()?.seq, from_tag)
            }
        };
        Ok(TxKey { branch, sent_by: via.sent_by().to_ascii_lowercase(), method })
    }

    /// The transaction's method (INVITE for an INVITE transaction, also when keyed by its ACK).
    pub fn method(&self) -> &Method {
        &self.method
    }

    pub fn branch(&self) -> &str {
        &self.branch
    }

    fn with_method(&self, method: Method) -> TxKey {
        TxKey { method, ..self.clone() }
    }
}

/// What the transaction layer asks of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOutput<P> {
    /// Send this response to `to` (the request's source; with RFC 3581 rport, reply there).
    Send { to: P, response: Response },
    /// A new request for the user agent, which answers through [`ServerTransactions::respond`].
    /// `local_tag` is the To tag to use in the answers (it is also the tag of a 487 after CANCEL).
    Request { tx: TxKey, request: Request, local_tag: String },
    /// The ACK to our 2xx arrived: the call is established (or the re-INVITE completed).
    Ack { tx: TxKey, ack: Request },
    /// The INVITE was cancelled; `200` to the CANCEL and `487` to the INVITE were sent.
    Cancelled { tx: TxKey },
    /// Our final response `status` was never acknowledged within 64·T1. After a 2xx the call is
    /// half-open: the server should send BYE.
    NoAck { tx: TxKey, status: u16 },
}

/// A misuse of the transaction layer by its caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    #[error("no such server transaction (it ended or never existed)")]
    UnknownTransaction,
    #[error("the transaction already sent a final response")]
    AlreadyFinal,
    #[error("request cannot be matched to a transaction: {0}")]
    Unmatchable(#[from] ParseError),
}

#[derive(Debug, Clone)]
enum State {
    /// INVITE, no final response yet; `last` is the latest provisional (100 Trying at first).
    Proceeding { last: Response },
    /// INVITE answered with 2xx: retransmit until ACK, T1 doubling to T2, give up at `end`.
    Accepted { response: Response, next: Instant, interval: Duration, end: Instant, acked: bool },
    /// INVITE answered with 3xx-6xx: Timer G retransmits, Timer H (`end`) gives up.
    Completed { response: Response, next: Instant, interval: Duration, end: Instant },
    /// ACK for the non-2xx received: absorb retransmitted ACKs until Timer I.
    Confirmed { end: Instant },
    /// Non-INVITE, waiting for the user agent.
    Trying,
    /// Non-INVITE with a provisional sent.
    NonInviteProceeding { last: Response },
    /// Non-INVITE with a final sent: answer retransmissions until Timer J.
    NonInviteCompleted { response: Response, end: Instant },
}

#[derive(Debug, Clone)]
struct Transaction<P> {
    /// Told apart from an earlier transaction of the same key in the timer heap.
    serial: u64,
    peer: P,
    request: Request,
    local_tag: String,
    state: State,
}

impl<P> Transaction<P> {
    fn deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Accepted { next, end, acked: false, .. } => Some((*next).min(*end)),
            State::Accepted { end, acked: true, .. } => Some(*end),
            State::Completed { next, end, .. } => Some((*next).min(*end)),
            State::Confirmed { end } | State::NonInviteCompleted { end, .. } => Some(*end),
            _ => None,
        }
    }
}

/// A transaction's deadline in the timer heap. Entries are never removed from the middle: one
/// whose transaction has ended or moved its deadline is skipped when it comes to the top.
#[derive(Debug)]
struct Due {
    at: Instant,
    serial: u64,
    key: TxKey,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.serial) == (other.at, other.serial)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.serial).cmp(&(other.at, other.serial))
    }
}

/// How a 2xx's ACK (a branch of its own) finds its INVITE: Call-ID, CSeq number, From tag.
type DialogKey = (String, u32, String);

fn dialog_key(req: &Request) -> Option<DialogKey> {
    let call_id = req.headers.call_id().ok()?.to_owned();
    let seq = req.headers.cseq().ok()?.seq;
    let from_tag = req.headers.from_addr().ok()?.tag().unwrap_or_default().to_owned();
    Some((call_id, seq, from_tag))
}

/// The table of live server transactions. Every lookup per message is by key (the ACK of a 2xx
/// too, through an index), never a walk over the table; timers come from a heap of deadlines, so
/// [`Self::next_deadline`] is a look at its top and [`Self::on_timeout`] touches only the
/// transactions that are due.
#[derive(Debug)]
pub struct ServerTransactions<P> {
    timers: Timers,
    ids: IdGen,
    txs: HashMap<TxKey, Transaction<P>>,
    /// Deadlines, earliest on top; the top is always current (stale entries below it are
    /// skipped when they surface).
    due: BinaryHeap<Reverse<Due>>,
    serials: u64,
    /// INVITE transactions in the Accepted state whose ACK has not come, by dialog.
    accepted: HashMap<DialogKey, TxKey>,
    /// Groups peers (e.g. by source address) to count their live transactions.
    grouping: Option<fn(&P) -> u64>,
    groups: HashMap<u64, usize>,
}

impl<P: Clone> ServerTransactions<P> {
    /// `tag_seed` seeds the To-tag generator (take it from a random source at start-up).
    pub fn new(timers: Timers, tag_seed: u64) -> Self {
        ServerTransactions {
            timers,
            ids: IdGen::new(tag_seed),
            txs: HashMap::new(),
            due: BinaryHeap::new(),
            serials: 0,
            accepted: HashMap::new(),
            grouping: None,
            groups: HashMap::new(),
        }
    }

    /// Counts live transactions per group of peers (`group` maps a peer to its group, e.g. the
    /// source address without the port), for [`Self::live_in_group_of`]. Call before any request.
    pub fn with_grouping(mut self, group: fn(&P) -> u64) -> Self {
        self.grouping = Some(group);
        self
    }

    /// Live transactions of `peer`'s group (0 without grouping).
    pub fn live_in_group_of(&self, peer: &P) -> usize {
        self.grouping.and_then(|g| self.groups.get(&g(peer)).copied()).unwrap_or(0)
    }

    fn insert(&mut self, key: TxKey, mut tx: Transaction<P>) {
        if let Some(g) = self.grouping {
            *self.groups.entry(g(&tx.peer)).or_default() += 1;
        }
        self.serials += 1;
        tx.serial = self.serials;
        if let Some(old) = self.txs.insert(key.clone(), tx) {
            self.forget(&old);
        }
        self.schedule(&key);
    }

    /// Puts `key`'s current deadline (if any) in the heap; call after any change of its state.
    fn schedule(&mut self, key: &TxKey) {
        if let Some(tx) = self.txs.get(key) {
            if let Some(at) = tx.deadline() {
                self.due.push(Reverse(Due { at, serial: tx.serial, key: key.clone() }));
            }
        }
        self.settle();
    }

    /// Whether a heap entry still stands for its transaction's deadline.
    fn current(&self, due: &Due) -> bool {
        self.txs.get(&due.key).is_some_and(|tx| tx.serial == due.serial && tx.deadline() == Some(due.at))
    }

    /// Drops stale entries from the top of the heap, so that the top is current.
    fn settle(&mut self) {
        while let Some(Reverse(top)) = self.due.peek() {
            if self.current(top) {
                break;
            }
            self.due.pop();
        }
    }

    /// Deadline entries held (current and stale), for tests: bounded by the transactions' changes
    /// of state within 64·T1.
    pub fn scheduled(&self) -> usize {
        self.due.len()
    }

    /// Book-keeping for a transaction leaving the table.
    fn forget(&mut self, tx: &Transaction<P>) {
        if let Some(g) = self.grouping {
            let group = g(&tx.peer);
            if let Some(n) = self.groups.get_mut(&group) {
                *n -= 1;
                if *n == 0 {
                    self.groups.remove(&group);
                }
            }
        }
        if let State::Accepted { acked: false, .. } = tx.state {
            if let Some(k) = dialog_key(&tx.request) {
                self.accepted.remove(&k);
            }
        }
    }

    /// How many transactions are live.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// The earliest instant at which [`Self::on_timeout`] has work to do (the heap's top).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.due.peek().map(|Reverse(d)| d.at)
    }

    /// A request arrived from `peer`. Retransmissions are absorbed (answered with the last
    /// response), ACK and CANCEL are matched to their INVITE, anything new is handed to the user
    /// agent as [`ServerOutput::Request`] (an INVITE also gets `100 Trying` at once).
    pub fn on_request(
        &mut self,
        request: Request,
        peer: P,
        now: Instant,
    ) -> Result<Vec<ServerOutput<P>>, TransactionError> {
        let key = TxKey::for_request(&request)?;
        if request.method == Method::Ack {
            return Ok(self.on_ack(key, request, now));
        }
        if let Some(tx) = self.txs.get(&key) {
            let resend = match &tx.state {
                State::Proceeding { last } | State::NonInviteProceeding { last } => Some(last),
                State::Accepted { response, .. }
                | State::Completed { response, .. }
                | State::NonInviteCompleted { response, .. } => Some(response),
                State::Confirmed { .. } | State::Trying => None,
            };
            return Ok(resend
                .map(|r| ServerOutput::Send { to: tx.peer.clone(), response: r.clone() })
                .into_iter()
                .collect());
        }
        if request.method == Method::Cancel {
            return Ok(self.on_cancel(key, request, peer, now));
        }
        let local_tag = self.ids.tag();
        let mut out = Vec::new();
        let state = if request.method == Method::Invite {
            let trying = response_to(&request, 100, &local_tag);
            out.push(ServerOutput::Send { to: peer.clone(), response: trying.clone() });
            State::Proceeding { last: trying }
        } else {
            State::Trying
        };
        out.push(ServerOutput::Request { tx: key.clone(), request: request.clone(), local_tag: local_tag.clone() });
        self.insert(key, Transaction { serial: 0, peer, request, local_tag, state });
        Ok(out)
    }

    fn on_ack(&mut self, key: TxKey, ack: Request, now: Instant) -> Vec<ServerOutput<P>> {
        let t4 = self.timers.t4;
        // An ACK for a non-2xx shares the INVITE's branch; one for a 2xx has a branch of its own
        // and is matched by dialog: Call-ID, CSeq number and From tag.
        let matched = if self.txs.contains_key(&key) {
            Some(key)
        } else {
            dialog_key(&ack).and_then(|k| self.accepted.get(&k)).cloned()
        };
        let Some(key) = matched else {
            return Vec::new();
        };
        let Some(tx) = self.txs.get_mut(&key) else {
            return Vec::new();
        };
        let out = match &mut tx.state {
            State::Completed { .. } => {
                tx.state = State::Confirmed { end: now + t4 };
                Vec::new()
            }
            State::Accepted { acked, .. } if !*acked => {
                *acked = true;
                if let Some(k) = dialog_key(&tx.request) {
                    self.accepted.remove(&k);
                }
                vec![ServerOutput::Ack { tx: key.clone(), ack }]
            }
            _ => return Vec::new(),
        };
        self.schedule(&key);
        out
    }

    fn on_cancel(&mut self, key: TxKey, cancel: Request, peer: P, now: Instant) -> Vec<ServerOutput<P>> {
        let end = now + self.timers.transaction_timeout();
        let invite_key = key.with_method(Method::Invite);
        let mut out = Vec::new();
        let (cancel_response, local_tag) = match self.txs.get_mut(&invite_key) {
            None => {
                let tag = self.ids.tag();
                (response_to(&cancel, 481, &tag), tag)
            }
            Some(invite) => {
                let tag = invite.local_tag.clone();
                let ok = response_to(&cancel, 200, &tag);
                out.push(ServerOutput::Send { to: peer.clone(), response: ok.clone() });
                if let State::Proceeding { .. } = invite.state {
                    let terminated = response_to(&invite.request, 487, &tag);
                    out.push(ServerOutput::Send { to: invite.peer.clone(), response: terminated.clone() });
                    invite.state = State::Completed {
                        response: terminated,
                        next: now + self.timers.t1,
                        interval: self.timers.t1,
                        end,
                    };
                    out.push(ServerOutput::Cancelled { tx: invite_key.clone() });
                }
                (ok, tag)
            }
        };
        self.schedule(&invite_key);
        if cancel_response.status == 481 {
            out.push(ServerOutput::Send { to: peer.clone(), response: cancel_response.clone() });
        }
        self.insert(
            key,
            Transaction {
                serial: 0,
                peer,
                request: cancel,
                local_tag,
                state: State::NonInviteCompleted { response: cancel_response, end },
            },
        );
        out
    }

    /// The user agent answers the request of transaction `tx`.
    pub fn respond(
        &mut self,
        tx: &TxKey,
        response: Response,
        now: Instant,
    ) -> Result<Vec<ServerOutput<P>>, TransactionError> {
        let timers = self.timers;
        let t = self.txs.get_mut(tx).ok_or(TransactionError::UnknownTransaction)?;
        if let Ok(Some(tag)) = response.headers.to_addr().map(|to| to.tag().map(str::to_owned)) {
            t.local_tag = tag;
        }
        let end = now + timers.transaction_timeout();
        let provisional = response.is_provisional();
        t.state = match (&t.state, provisional) {
            (State::Proceeding { .. }, true) => State::Proceeding { last: response.clone() },
            (State::Proceeding { .. }, false) if response.is_success() => State::Accepted {
                response: response.clone(),
                next: now + timers.t1,
                interval: timers.t1,
                end,
                acked: false,
            },
            (State::Proceeding { .. }, false) => {
                State::Completed { response: response.clone(), next: now + timers.t1, interval: timers.t1, end }
            }
            (State::Trying | State::NonInviteProceeding { .. }, true) => {
                State::NonInviteProceeding { last: response.clone() }
            }
            (State::Trying | State::NonInviteProceeding { .. }, false) => {
                State::NonInviteCompleted { response: response.clone(), end }
            }
            _ => return Err(TransactionError::AlreadyFinal),
        };
        let (peer, accepted) = (t.peer.clone(), matches!(t.state, State::Accepted { .. }));
        if accepted {
            if let Some(k) = dialog_key(&t.request) {
                self.accepted.insert(k, tx.clone());
            }
        }
        self.schedule(tx);
        Ok(vec![ServerOutput::Send { to: peer, response }])
    }

    /// Fires every timer due at `now`: retransmissions (2xx, Timer G), give-ups (64·T1, Timer H)
    /// and clean-ups (Timers I, J, L). Ended transactions are dropped. Only the transactions due
    /// are touched (they come off the heap in deadline order).
    pub fn on_timeout(&mut self, now: Instant) -> Vec<ServerOutput<P>> {
        let t2 = self.timers.t2;
        let mut out = Vec::new();
        while self.due.peek().is_some_and(|Reverse(d)| d.at <= now) {
            let Some(Reverse(due)) = self.due.pop() else { break };
            if !self.current(&due) {
                continue;
            }
            let key = due.key;
            let Some(tx) = self.txs.get_mut(&key) else { continue };
            let peer = tx.peer.clone();
            let mut terminate = false;
            // One send per call even when called late (no bursts); the schedule stays on its grid.
            let mut resend = |response: &Response, next: &mut Instant, interval: &mut Duration| {
                if *next <= now {
                    out.push(ServerOutput::Send { to: peer.clone(), response: response.clone() });
                }
                while *next <= now {
                    *interval = (*interval * 2).min(t2);
                    *next += *interval;
                }
            };
            match &mut tx.state {
                State::Accepted { response, next, interval, end, acked } => {
                    if now >= *end {
                        if !*acked {
                            out.push(ServerOutput::NoAck { tx: key.clone(), status: response.status });
                        }
                        terminate = true;
                    } else if !*acked {
                        resend(response, next, interval);
                    }
                }
                State::Completed { response, next, interval, end } => {
                    if now >= *end {
                        out.push(ServerOutput::NoAck { tx: key.clone(), status: response.status });
                        terminate = true;
                    } else {
                        resend(response, next, interval);
                    }
                }
                State::Confirmed { end } | State::NonInviteCompleted { end, .. } => terminate = now >= *end,
                _ => {}
            }
            if terminate {
                if let Some(tx) = self.txs.remove(&key) {
                    self.forget(&tx);
                }
            } else if let Some(tx) = self.txs.get(&key) {
                if let Some(at) = tx.deadline() {
                    self.due.push(Reverse(Due { at, serial: tx.serial, key }));
                }
            }
        }
        self.settle();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{parse, Message};

    const INVITE: &str = "INVITE sip:service@127.0.0.1:5080 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1;rport\r\n\
From: sipp <sip:sipp@127.0.0.1:5061>;tag=caller\r\nTo: <sip:service@127.0.0.1:5080>\r\n\
Call-ID: c1@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:sipp@127.0.0.1:5061>\r\nMax-Forwards: 70\r\n\r\n";

    fn req(text: &str) -> Request {
        match parse(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => panic!("request expected"),
        }
    }

    fn sent(out: &[ServerOutput<&'static str>]) -> Vec<u16> {
        out.iter()
            .filter_map(|o| match o {
                ServerOutput::Send { response, .. } => Some(response.status),
                _ => None,
            })
            .collect()
    }

    fn new_invite(layer: &mut ServerTransactions<&'static str>, now: Instant) -> (TxKey, String) {
        let out = layer.on_request(req(INVITE), "peer", now).unwrap();
        assert_eq!(sent(&out), vec![100]);
        match &out[1] {
            ServerOutput::Request { tx, local_tag, .. } => (tx.clone(), local_tag.clone()),
            other => panic!("{other:?}"),
        }
    }

    /// Drives the layer by its own deadlines until `until`, returning (offset ms, output).
    fn run_until(
        layer: &mut ServerTransactions<&'static str>,
        t0: Instant,
        until: Duration,
    ) -> Vec<(u128, ServerOutput<&'static str>)> {
        let mut log = Vec::new();
        while let Some(d) = layer.next_deadline() {
            if d > t0 + until {
                break;
            }
            for o in layer.on_timeout(d) {
                log.push(((d - t0).as_millis(), o));
            }
        }
        log
    }

    #[test]
    fn timers_come_from_the_heap_touching_only_the_transactions_due() {
        let t0 = Instant::now();
        let mut layer = ServerTransactions::new(Timers::default(), 1);
        // 2,000 OPTIONS answered at once: each waits for Timer J (32 s), nothing is due before.
        for i in 0..2000 {
            let text = INVITE
                .replace("INVITE sip:service@127.0.0.1:5080", "OPTIONS sip:service@127.0.0.1:5080")
                .replace("z9hG4bK-1", &format!("z9hG4bK-o{i}"))
                .replace("1 INVITE", "1 OPTIONS");
            let out = layer.on_request(req(&text), "peer", t0).unwrap();
            let ServerOutput::Request { tx, request, local_tag } = &out[0] else { panic!("{out:?}") };
            layer.respond(tx, response_to(request, 200, local_tag), t0).unwrap();
        }
        // One INVITE answered 200 half a second later: its retransmission is the next deadline.
        let t1 = t0 + Duration::from_millis(500);
        let (tx, tag) = new_invite(&mut layer, t1);
        layer.respond(&tx, response_to(&req(INVITE), 200, &tag), t1).unwrap();
        assert_eq!(layer.next_deadline(), Some(t1 + Duration::from_millis(500)));
        assert_eq!(sent(&layer.on_timeout(t1 + Duration::from_millis(500))), vec![200]);
        // Its ACK moves its deadline to the end of the Accepted state; the old entry is skipped.
        let ack = INVITE
            .replace("INVITE sip:service@127.0.0.1:5080", "ACK sip:sipp@127.0.0.1:5061")
            .replace("z9hG4bK-1", "z9hG4bK-ack")
            .replace("1 INVITE", "1 ACK");
        layer.on_request(req(&ack), "peer", t1 + Duration::from_millis(600)).unwrap();
        assert_eq!(layer.next_deadline(), Some(t0 + Duration::from_secs(32)), "the OPTIONS' Timer J comes first now");
        assert!(layer.on_timeout(t0 + Duration::from_secs(31)).is_empty());
        assert_eq!(layer.len(), 2001);
        assert!(layer.scheduled() <= 2003, "{}", layer.scheduled());
        layer.on_timeout(t0 + Duration::from_secs(32));
        assert_eq!((layer.len(), layer.next_deadline()), (1, Some(t1 + Duration::from_secs(32))));
        layer.on_timeout(t1 + Duration::from_secs(32));
        assert!(layer.is_empty());
        assert_eq!((layer.scheduled(), layer.next_deadline()), (0, None));
    }

    #[test]
    fn ok_retransmitted_with_doubling_until_no_ack_at_32s() {
        let t0 = Instant::now();
        let mut layer = ServerTransactions::new(Timers::default(), 1);
        let (tx, tag) = new_invite(&mut layer, t0);
        let ok = response_to(&req(INVITE), 200, &tag);
        assert_eq!(sent(&layer.respond(&tx, ok, t0).unwrap()), vec![200]);
        let log = run_until(&mut layer, t0, Duration::from_secs(40));
        let sends: Vec<u128> =
            log.iter().filter(|(_, o)| matches!(o, ServerOutput::Send { .. })).map(|(t, _)| *t).collect();
        assert_eq!(sends, vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]);
        let gaps: Vec<u128> = sends.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(&gaps[..4], &[1000, 2000, 4000, 4000]);
        assert_eq!(log.last().map(|(t, o)| (*t, o.clone())), Some((32000, ServerOutput::NoAck { tx, status: 200 })));
        assert!(layer.is_empty());
    }

    #[test]
    fn ack_for_2xx_stops_retransmission_and_is_reported_once() {
        let t0 = Instant::now();
        let mut layer = ServerTransactions::new(Timers::default(), 1);
        let (tx, tag) = new_invite(&mut layer, t0);
        layer.respond(&tx, response_to(&req(INVITE), 200, &tag), t0).unwrap();
        assert_eq!(sent(&layer.on_timeout(t0 + Duration::from_millis(500))), vec![200]);
        let ack_text = INVITE
            .replace("INVITE sip:service@127.0.0.1:5080", "ACK sip:sipp@127.0.0.1:5061")
            .replace("z9hG4bK-1", "z9hG4bK-ack")
            .replace("1 INVITE", "1 ACK")
            .replace("To: <sip:service@127.0.0.1:5080>", &format!("To: <sip:service@127.0.0.1:5080>;tag={tag}"));
        let out = layer.on_request(req(&ack_text), "peer", t0 + Duration::from_millis(600)).unwrap();
        assert!(matches!(&out[..], [ServerOutput::Ack { .. }]), "{out:?}");
        assert!(layer.on_request(req(&ack_text), "peer", t0 + Duration::from_millis(700)).unwrap().is_empty());
        // A late INVITE retransmission is absorbed with the 200, not passed up again.
        assert_eq!(sent(&layer.on_request(req(INVITE), "peer", t0 + Duration::from_secs(1)).unwrap()), vec![200]);
        let log = run_until(&mut layer, t0, Duration::from_secs(40));
        assert!(log.is_empty(), "{log:?}");
        assert!(layer.is_empty());
    }

    #[test]
    fn late_timer_call_sends_once() {
        let t0 = Instant::now();
        let mut layer = ServerTransactions::new(Timers::default(), 1);
        let (tx, tag) = new_invite(&mut layer, t0);
        layer.respond(&tx, response_to(&req(INVITE), 200, &tag), t0).unwrap();
        assert_eq!(sent(&layer.on_timeout(t0 + Duration::from_secs(10))), vec![200]);
        assert_eq!(layer.next_deadline(), Some(t0 + Duration::from_millis(11500)));
    }

    #[test]
    fn retransmitted_invite_gets_last_response() {
        let t0 = Instant::now();
        let mut layer = ServerTransactions::new(Timers::default(), 1);
        let (tx, tag) = new_invite(&mut layer, t0);
        assert_eq!(sent(&layer.on_request(req(INVITE), "peer", t0).unwrap()), vec![100]);
        layer.respond(&tx, response_to(&req(INVITE), 180, &tag), t0).unwrap();
        let out = layer.on_request(req(INVITE), "peer", t0).unwrap();
        assert_eq!(sent(&out), vec![180]);
        assert!(!out.iter().any(|o| matches!(o, ServerOutput::Request { .. })));
    }

    #[test]
    fn cancel_gets_200_and_invite_gets_487_then_ack_confirms() {
        let t0 = Instant::now();
        let mut layer = ServerTransactions::new(Timers::default(), 1);
        let (tx, tag) = new_invite(&mut layer, t0);
        layer.respond(&tx, response_to(&req(INVITE), 180, &tag), t0).unwrap();
        let cancel = INVITE.replace("INVITE sip:", "CANCEL sip:").replace("1 INVITE", "1 CANCEL");
        let out = layer.on_request(req(&cancel), "peer", t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(sent(&out), vec![200, 487]);
        assert!(out.contains(&ServerOutput::Cancelled { tx: tx.clone() }));
        if let ServerOutput::Send { response, .. } = &out[1] {
            assert_eq!(response.headers.cseq().unwrap().method, Method::Invite);
            assert_eq!(response.headers.to_addr().unwrap().tag(), Some(tag.as_str()));
        }
        // CANCEL retransmitted: same 200 again. The UA can no longer answer the INVITE.
        assert_eq!(sent(&layer.on_request(req(&cancel), "peer", t0 + Duration::from_secs(1)).unwrap()), vec![200]);
        let late = layer.respond(&tx, response_to(&req(INVITE), 200, &tag), t0 + Duration::from_secs(1));
        assert_eq!(late, Err(TransactionError::AlreadyFinal));
        // 487 retransmitted by Timer G until the ACK (same branch) arrives.
        assert_eq!(sent(&layer.on_timeout(t0 + Duration::from_millis(1500))), vec![487]);
        let ack = INVITE.replace("INVITE sip:", "ACK sip:").replace("1 INVITE", "1 ACK");
        assert!(layer.on_request(req(&ack), "peer", t0 + Duration::from_millis(1600)).unwrap().is_empty());
        let log = run_until(&mut layer, t0, Duration::from_secs(60));
        assert!(log.is_empty(), "{log:?}");
        assert!(layer.is_empty());
    }

    #[test]
    fn cancel_without_invite_is_481() {
        let mut layer = ServerTransactions::new(Timers::default(), 1);
        let cancel = INVITE.replace("INVITE sip:", "CANCEL sip:").replace("1 INVITE", "1 CANCEL");
        let out = layer.on_request(req(&cancel), "peer", Instant::now()).unwrap();
        assert_eq!(sent(&out), vec![481]);
    }

    #[test]
    fn non_2xx_without_ack_times_out_with_timer_h() {
        let t0 = Instant::now();
        let mut layer = ServerTransactions::new(Timers::default(), 1);
        let (tx, tag) = new_invite(&mut layer, t0);
        layer.respond(&tx, response_to(&req(INVITE), 486, &tag), t0).unwrap();
        let log = run_until(&mut layer, t0, Duration::from_secs(40));
        assert_eq!(log.iter().filter(|(_, o)| matches!(o, ServerOutput::Send { .. })).count(), 10);
        assert_eq!(log.last().map(|(t, _)| *t), Some(32000));
        assert!(matches!(log.last(), Some((_, ServerOutput::NoAck { status: 486, .. }))));
    }

    #[test]
    fn non_invite_absorbs_retransmissions_until_timer_j() {
        let t0 = Instant::now();
        let mut layer = ServerTransactions::new(Timers::default(), 1);
        let bye = INVITE.replace("INVITE sip:", "BYE sip:").replace("1 INVITE", "2 BYE");
        let out = layer.on_request(req(&bye), "peer", t0).unwrap();
        let ServerOutput::Request { tx, request, local_tag } = &out[0] else { panic!("{out:?}") };
        assert_eq!(out.len(), 1, "no 100 for non-INVITE");
        assert!(layer.on_request(req(&bye), "peer", t0).unwrap().is_empty(), "absorbed while Trying");
        layer.respond(tx, response_to(request, 200, local_tag), t0).unwrap();
        assert_eq!(sent(&layer.on_request(req(&bye), "peer", t0 + Duration::from_secs(5)).unwrap()), vec![200]);
        assert!(layer.on_timeout(t0 + Duration::from_secs(31)).is_empty());
        assert_eq!(layer.len(), 1);
        assert!(layer.on_timeout(t0 + Duration::from_secs(32)).is_empty());
        assert!(layer.is_empty());
        assert_eq!(
            layer.respond(tx, response_to(request, 200, local_tag), t0),
            Err(TransactionError::UnknownTransaction)
        );
    }

    #[test]
    fn live_transactions_are_counted_per_group_of_peers() {
        let t0 = Instant::now();
        let group: fn(&&'static str) -> u64 = |p| u64::from(p.as_bytes()[0]);
        let mut layer = ServerTransactions::new(Timers::default(), 1).with_grouping(group);
        let options = |i: usize| {
            INVITE
                .replace("INVITE sip:", "OPTIONS sip:")
                .replace("1 INVITE", "1 OPTIONS")
                .replace("z9hG4bK-1", &format!("z9hG4bK-o{i}"))
        };
        for i in 0..3 {
            layer.on_request(req(&options(i)), "a:1", t0).unwrap();
        }
        layer.on_request(req(&options(9)), "b:1", t0).unwrap();
        assert_eq!(layer.live_in_group_of(&"a:2"), 3, "grouped by host, whatever the port");
        assert_eq!(layer.live_in_group_of(&"b:7"), 1);
        // Answered, they end with Timer J and leave their group.
        for i in 0..3 {
            let r = req(&options(i));
            let key = TxKey::for_request(&r).unwrap();
            layer.respond(&key, response_to(&r, 200, "t"), t0).unwrap();
        }
        layer.on_timeout(t0 + Duration::from_secs(32));
        assert_eq!(layer.live_in_group_of(&"a:1"), 0);
        assert_eq!(layer.live_in_group_of(&"b:1"), 1, "never answered: still live");
        // The 2xx's ACK is found through the index and the index empties with the transaction.
        let (tx, tag) = new_invite(&mut layer, t0);
        layer.respond(&tx, response_to(&req(INVITE), 200, &tag), t0).unwrap();
        assert_eq!(layer.accepted.len(), 1);
        let ack =
            INVITE.replace("INVITE sip:", "ACK sip:").replace("1 INVITE", "1 ACK").replace("z9hG4bK-1", "z9hG4bK-ack");
        assert!(matches!(layer.on_request(req(&ack), "a:1", t0).unwrap()[..], [ServerOutput::Ack { .. }]));
        assert!(layer.accepted.is_empty());
    }
}
