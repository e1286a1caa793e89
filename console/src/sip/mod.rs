//! The SIP adapter: answers real phone calls on `sip_addr` (UDP) and turns them into engine
//! events, so a SIP trunk or PBX can reach the helpline without any HTTP carrier in the path.
//!
//! It only glues sockets and timers to the pure protocol code in `ivr::sip`, `ivr::sdp` and
//! `ivr::rtp` (grammar, transactions, dialogs, offer/answer, packetizer, DTMF) and to the call
//! runtime (`CallRuntime::handle`), which every adapter goes through:
//!
//! - `signalling.rs`: one task owns the SIP socket, the server transactions, the dialogs and our
//!   own BYE/REFER client transactions;
//! - `call.rs`: one control task per call runs its events through the runtime *in order* and
//!   carries out the actions (audio, digit collection, hang-up, transfer);
//! - `media.rs`: one shared media clock (an OS thread on a 1 ms wheel) sends every call's paced
//!   G.711; one small receive task per call reads RFC 4733 DTMF and the caller's address. The
//!   clock never waits on the database or the runtime, so neither can make the audio stutter;
//! - `operator_leg.rs`: a carrier's transfer to a browser operator's address
//!   (`sip:op-<user>@…;token=…`), taken as the operator leg of its call and bridged to the
//!   operator's browser phone;
//! - `collect.rs`: the digit collector (pure); `audio.rs`: prompts and hold audio, cached.
//!
//! Architecture invariant: the engine sees only `Event`s; SIP dialogs, transactions and RTP never
//! reach it, and every event of a SIP call goes through the same call log as webhook calls.

mod admission;
mod audio;
mod call;
mod collect;
mod drain;
mod media;
mod operator_leg;
mod signalling;
pub mod trunk;

pub use admission::{Admission, AllowList, Arrival, Kind, Verdict};
pub use audio::PromptAudio;
pub use collect::{Collected, Collector};
pub use drain::Drain;

use crate::calls::CallRuntime;
use crate::clock::Clock;
use crate::config::Settings;
use crate::db::Db;
use crate::media::Phone;
use crate::metrics::Metrics;
use crate::voice::Voice;
use ivr::domain::ServerSecret;
use ivr::prompts::Tts;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::UdpSocket;

/// Why the SIP server could not start.
#[derive(Debug, thiserror::Error)]
pub enum SipError {
    #[error("cannot listen for SIP on UDP {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("rtp_port_min ({min}) is above rtp_port_max ({max})")]
    PortRange { min: u16, max: u16 },
    #[error("cannot start the media clock thread: {0}")]
    MediaClock(std::io::Error),
    #[error(transparent)]
    Allow(#[from] admission::AllowError),
    #[error("{0}")]
    Auth(String),
}

/// The UDP ports calls' RTP sockets come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPorts {
    pub min: u16,
    pub max: u16,
}

impl RtpPorts {
    pub fn new(min: u16, max: u16) -> Result<RtpPorts, SipError> {
        if min > max {
            return Err(SipError::PortRange { min, max });
        }
        Ok(RtpPorts { min, max })
    }

    /// Binds a socket on `ip` at a free port of the range (an even one, as RTP likes), or any
    /// port when the range is 0-0. A plain bind: cheap enough for the signalling task.
    pub fn bind_std(&self, ip: std::net::IpAddr) -> std::io::Result<std::net::UdpSocket> {
        if self.max == 0 {
            return std::net::UdpSocket::bind(SocketAddr::new(ip, 0));
        }
        let span = u32::from(self.max - self.min) + 1;
        let mut last = std::io::Error::new(std::io::ErrorKind::AddrInUse, "no free RTP port in the range");
        for _ in 0..64 {
            let offset = rand::random::<u32>() % span;
            let port = u16::try_from(u32::from(self.min) + offset).unwrap_or(self.max) & !1;
            match std::net::UdpSocket::bind(SocketAddr::new(ip, port.max(self.min))) {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// What the SIP adapter needs while it runs.
pub struct SipState {
    pub db: Db,
    pub settings: Arc<Settings>,
    pub secret: Arc<ServerSecret>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub calls: CallRuntime,
    pub voice: Voice,
    pub tts: Arc<Tts>,
    /// Where operators' browser phones meet this node's calls.
    pub phone: Phone,
    /// This node: written on each call it answers, so the others end its calls if it dies.
    pub node: crate::calls::nodes::NodeId,
    /// Sends the services read back by text message (`Action::SendText`).
    pub texts: Arc<dyn crate::calls::TextSender>,
}

/// A bound, not yet running SIP server.
pub struct SipServer {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    ports: RtpPorts,
    clock: media::MediaClock,
    admission: Admission,
}

impl SipServer {
    /// Binds `sip_addr` (port 0 allowed) and checks the RTP port range.
    pub async fn bind(settings: &Settings) -> Result<SipServer, SipError> {
        let ports = RtpPorts::new(settings.rtp_port_min, settings.rtp_port_max)?;
        let allow = AllowList::parse(&settings.sip_allow)?;
        let credentials = settings.sip_auth_credentials().map_err(|e| SipError::Auth(e.to_string()))?;
        if allow.is_empty() && credentials.is_none() && !settings.sip_addr.ip().is_loopback() {
            tracing::warn!(
                addr = %settings.sip_addr,
                hint = "set it to the networks of the trunks and proxies (docs/sip.md, Facing the internet)",
                "HELPLINE_SIP_ALLOW is empty: anyone who reaches the SIP port may call"
            );
        }
        let mut admission = Admission::new(allow, settings.sip_rate, settings.sip_max_calls)
            .with_request_rate(settings.sip_request_rate);
        if let Some(credentials) = credentials {
            let realm = settings.sip_auth_realm.trim();
            tracing::info!(realm, user = %credentials.username, "SIP digest authentication for sources outside HELPLINE_SIP_ALLOW");
            admission = admission.with_digest(ivr::sip::DigestVerifier::new(
                realm,
                &credentials,
                rand::random(),
                std::time::Instant::now(),
            ));
        }
        let socket = UdpSocket::bind(settings.sip_addr)
            .await
            .map_err(|source| SipError::Bind { addr: settings.sip_addr, source })?;
        let local = socket.local_addr().unwrap_or(settings.sip_addr);
        let clock = media::MediaClock::start().map_err(SipError::MediaClock)?;
        Ok(SipServer { socket: Arc::new(socket), local, ports, clock, admission })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Answers calls until `shutdown` completes; calls in progress are then hung up (BYE). When
    /// `drain` starts first, new calls are refused and the live ones kept up to its time.
    pub async fn run(self, state: Arc<SipState>, drain: Drain, shutdown: impl Future<Output = ()> + Send + 'static) {
        signalling::run(self, drain, state, shutdown).await;
    }
}
