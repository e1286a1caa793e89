//! Property tests for the SIP parser: it never panics on any bytes, and whatever it accepts
//! serializes to bytes that parse back to the same message (parse → serialize → parse is stable).
//! The cargo-fuzz target in `ivr/fuzz` checks the same properties for longer.

use proptest::prelude::*;

use super::{parse, reject_unparseable};

const CORPUS: &[&str] = &[
    "INVITE sip:service@127.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1;rport\r\n\
From: sipp <sip:sipp@127.0.0.1:5061>;tag=1\r\nTo: service <sip:service@127.0.0.1:5080>\r\n\
Call-ID: 1-1@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: sip:sipp@127.0.0.1:5061\r\nMax-Forwards: 70\r\n\
Content-Type: application/sdp\r\nContent-Length: 29\r\n\r\nv=0\r\nm=audio 6000 RTP/AVP 0\r\n",
    "BYE sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h1;branch=z9hG4bK1, SIP/2.0/UDP h2:5062\r\n\t;branch=z9hG4bK2\r\n\
f: \"A, B\" <sip:x@y>;tag=1\r\nt: <sip:a@b>;tag=2\r\ni: cid\r\nCSeq: 2 BYE\r\nl: 0\r\n\r\n",
    "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx;received=1.2.3.4;rport=5\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 5 INVITE\r\nRecord-Route: <sip:p1;lr>,<sip:p2;lr>\r\n\r\n",
    "INFO sip:s@h SIP/2.0\nVia: SIP/2.0/UDP [::1]:5060;branch=z9hG4bKi\nFrom: <sip:a@b>;tag=1\nTo: <sip:s@h>;tag=2\n\
Call-ID: i\nCSeq: 3 INFO\nContent-Type: application/dtmf-relay\n\nSignal=5\r\nDuration=160\r\n",
];

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, byte: u8 },
    Delete { at: usize, len: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Duplicate { at: usize, len: usize },
    Truncate { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting =
        prop::sample::select(vec![b'\r', b'\n', b' ', b'\t', b':', b',', b';', b'"', b'<', b'>', b'=', b'0', 0xFF]);
    prop_oneof![
        (any::<usize>(), prop_oneof![any::<u8>(), interesting.clone()])
            .prop_map(|(at, byte)| Mutation::Flip { at, byte }),
        (any::<usize>(), 0usize..40).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), prop::collection::vec(prop_oneof![any::<u8>(), interesting], 1..8))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 0usize..60).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn apply(mut data: Vec<u8>, m: &Mutation) -> Vec<u8> {
    let n = data.len().max(1);
    match m {
        Mutation::Flip { at, byte } => {
            if !data.is_empty() {
                data[at % n] = *byte;
            }
        }
        Mutation::Delete { at, len } => {
            let start = at % n;
            let end = (start + len).min(data.len());
            data.drain(start.min(end)..end);
        }
        Mutation::Insert { at, bytes } => {
            let at = at % (data.len() + 1);
            data.splice(at..at, bytes.iter().copied());
        }
        Mutation::Duplicate { at, len } => {
            let start = at % n;
            let end = (start + len).min(data.len());
            let piece: Vec<u8> = data.get(start..end).unwrap_or_default().to_vec();
            data.splice(end..end, piece);
        }
        Mutation::Truncate { at } => data.truncate(at % n),
    }
    data
}

/// The properties every input must satisfy.
fn check(data: &[u8]) -> Result<(), TestCaseError> {
    match parse(data) {
        Ok(msg) => {
            let bytes = msg.to_bytes();
            let again = parse(&bytes);
            prop_assert_eq!(again.as_ref(), Ok(&msg), "re-parse of {:?}", String::from_utf8_lossy(&bytes));
            prop_assert_eq!(again.map(|m| m.to_bytes()).ok(), Some(bytes));
        }
        Err(e) => {
            if let Some(resp) = reject_unparseable(data, &e) {
                prop_assert!(resp.status >= 400);
                prop_assert!(!resp.reason.contains(['\r', '\n']));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..600)) {
        check(&data)?;
    }

    #[test]
    fn mutated_messages_never_panic_and_round_trip(
        which in 0..CORPUS.len(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let data = mutations.iter().fold(CORPUS[which].as_bytes().to_vec(), apply);
        check(&data)?;
    }

    #[test]
    fn random_header_values_round_trip(
        name in "[A-Za-z][A-Za-z0-9-]{0,12}",
        value in "[ -~\t]{0,40}",
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut text = CORPUS[1].replace("l: 0\r\n\r\n", "").into_bytes();
        text.extend_from_slice(format!("{name}: {value}\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
        text.extend_from_slice(&body);
        check(&text)?;
    }
}

#[test]
fn corpus_parses() {
    for text in CORPUS {
        assert!(parse(text.as_bytes()).is_ok(), "{text}");
    }
}
