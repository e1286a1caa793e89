//! A whole call as the UDP server will drive it, with no sockets: sipp-style INVITE in, 100/200
//! with an SDP answer out, ACK, DTMF by RFC 4733 and by INFO, then our BYE. Shows the order of
//! calls the server makes, and checks the modules agree with each other.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::domain::DtmfDigit;
use crate::rtp::{parse_info_dtmf, DtmfReceiver, DtmfSender, RtpHeader, RtpPacket, DEFAULT_EVENT_TIMEOUT};
use crate::sdp::{negotiate, Codec, LocalMedia, SessionDescription};
use crate::sip::{
    invite_ok, parse, policy_response, response_to, stamp_received, ClientOutput, Dialog, IdGen, LocalVia, Message,
    Method, NonInviteClientTransaction, Request, ServerOutput, ServerTransactions, Timers,
};

const INVITE: &str = "INVITE sip:service@127.0.0.1:5080 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4242-1-0;rport\r\n\
From: sipp <sip:sipp@127.0.0.1:5061>;tag=4242SIPpTag001\r\n\
To: service <sip:service@127.0.0.1:5080>\r\n\
Call-ID: 1-4242@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: sip:sipp@127.0.0.1:5061\r\n\
Max-Forwards: 70\r\n\
Subject: Performance Test\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 185\r\n\
\r\n\
v=0\r\n\
o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n";

fn request(bytes: &[u8], source: SocketAddr) -> Request {
    match parse(bytes) {
        Ok(Message::Request(mut r)) => {
            stamp_received(&mut r, source).unwrap();
            r
        }
        other => panic!("expected a request, got {other:?}"),
    }
}

#[test]
fn sipp_call_from_invite_to_bye() {
    let t0 = Instant::now();
    let caller: SocketAddr = "127.0.0.1:5061".parse().unwrap();
    let mut layer = ServerTransactions::new(Timers::default(), 7);
    let mut ids = IdGen::new(8);

    // INVITE → 100 Trying at once, and the request for the user agent.
    let invite = request(INVITE.as_bytes(), caller);
    let out = layer.on_request(invite, caller, t0).unwrap();
    let (tx, invite, tag) = match &out[..] {
        [ServerOutput::Send { to, response }, ServerOutput::Request { tx, request, local_tag }] => {
            assert_eq!((*to, response.status), (caller, 100));
            assert!(response.headers.get("Via").unwrap().contains("rport=5061;received=127.0.0.1"));
            (tx.clone(), request.clone(), local_tag.clone())
        }
        other => panic!("{other:?}"),
    };
    assert!(policy_response(&invite, &tag).is_none());

    // SDP offer → answer: PCMU, telephone-event at 101.
    let offer = SessionDescription::parse(&invite.body).unwrap();
    let local = LocalMedia::new("127.0.0.1".parse().unwrap(), 20000, 1);
    let media = negotiate(&offer, &local).unwrap();
    assert_eq!((media.codec, media.telephone_event_payload_type), (Codec::Pcmu, Some(101)));
    assert_eq!(media.remote_rtp, Some("127.0.0.1:6000".parse().unwrap()));
    let ok = invite_ok(&invite, &tag, "sip:helpline@127.0.0.1:5080", &media.answer_sdp());
    let out = layer.respond(&tx, ok, t0 + Duration::from_millis(10)).unwrap();
    let ServerOutput::Send { response: ok, .. } = &out[0] else { panic!("{out:?}") };
    let ok_bytes = ok.to_bytes();
    let reparsed = match parse(&ok_bytes).unwrap() {
        Message::Response(r) => r,
        Message::Request(_) => panic!(),
    };
    assert!(String::from_utf8_lossy(&reparsed.body).contains("m=audio 20000 RTP/AVP 0 101"));
    let mut dialog = Dialog::new_uas(&invite, &tag, "sip:helpline@127.0.0.1:5080").unwrap();

    // ACK (new branch, To tag ours) → the call is up; no more 200 retransmissions.
    let ack = format!(
        "ACK sip:helpline@127.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4242-1-5\r\n\
From: sipp <sip:sipp@127.0.0.1:5061>;tag=4242SIPpTag001\r\nTo: service <sip:service@127.0.0.1:5080>;tag={tag}\r\n\
Call-ID: 1-4242@127.0.0.1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    let ack = request(ack.as_bytes(), caller);
    assert!(dialog.matches(&ack));
    let out = layer.on_request(ack, caller, t0 + Duration::from_millis(50)).unwrap();
    assert!(matches!(&out[..], [ServerOutput::Ack { .. }]), "{out:?}");

    // DTMF "5" by RFC 4733, triple end packets: one key.
    let mut rx = DtmfReceiver::new(media.telephone_event_payload_type.unwrap_or(101), DEFAULT_EVENT_TIMEOUT);
    let mut keys = Vec::new();
    for (i, p) in DtmfSender::packets(DtmfDigit::new('5').unwrap(), 16000, 800, 10).iter().enumerate() {
        let header = RtpHeader {
            marker: p.marker,
            payload_type: 101,
            sequence: i as u16,
            timestamp: p.timestamp,
            ssrc: 99,
            csrcs: vec![],
        };
        let bytes = header.encode(&p.payload);
        let pkt = RtpPacket::decode(&bytes).unwrap();
        keys.extend(rx.on_packet(&pkt.header, pkt.payload, t0 + Duration::from_millis(20 * i as u64)));
    }
    assert_eq!(keys, [DtmfDigit::new('5').unwrap()]);

    // DTMF "#" by SIP INFO, answered 200.
    let info = format!(
        "INFO sip:helpline@127.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-info\r\n\
From: sipp <sip:sipp@127.0.0.1:5061>;tag=4242SIPpTag001\r\nTo: service <sip:service@127.0.0.1:5080>;tag={tag}\r\n\
Call-ID: 1-4242@127.0.0.1\r\nCSeq: 2 INFO\r\nContent-Type: application/dtmf-relay\r\n\r\nSignal=#\r\nDuration=160\r\n"
    );
    let info = request(info.as_bytes(), caller);
    dialog.on_remote_request(&info).unwrap();
    let ct = info.headers.content_type().unwrap_or_default();
    assert_eq!(parse_info_dtmf(&ct, &info.body), Ok(DtmfDigit::new('#').unwrap()));
    let out = layer.on_request(info, caller, t0 + Duration::from_secs(2)).unwrap();
    let ServerOutput::Request { tx: info_tx, request: info, local_tag } = &out[0] else { panic!("{out:?}") };
    assert_eq!(info.method, Method::Info);
    let out = layer.respond(info_tx, response_to(info, 200, local_tag), t0 + Duration::from_secs(2)).unwrap();
    assert!(matches!(&out[..], [ServerOutput::Send { response, .. }] if response.status == 200));

    // We hang up: BYE in the dialog, retransmitted until the 200.
    let via = LocalVia { sent_by: "127.0.0.1:5080".into() };
    let bye = dialog.bye(&via, &ids.branch());
    assert_eq!(bye.uri, "sip:sipp@127.0.0.1:5061");
    let (mut client, first) = NonInviteClientTransaction::start(&bye, Timers::default(), t0 + Duration::from_secs(3));
    assert!(matches!(first, ClientOutput::Send(_)));
    let bye_ok = response_to(&bye, 200, "4242SIPpTag001");
    assert!(client.matches(&bye_ok));
    assert!(
        matches!(client.on_response(bye_ok, t0 + Duration::from_secs(3)), Some(ClientOutput::Final(r)) if r.status == 200)
    );

    // Everything winds down by its timers.
    while let Some(d) = layer.next_deadline() {
        assert!(layer.on_timeout(d).iter().all(|o| !matches!(o, ServerOutput::NoAck { .. })));
    }
    assert!(layer.is_empty());
}
