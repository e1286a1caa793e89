//! Fuzzes the SIP parser: no input may panic it, and whatever it accepts must serialize to bytes
//! that parse back to the same message.
#![no_main]

use ivr::sip::{parse, reject_unparseable};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(msg) => {
            let bytes = msg.to_bytes();
            let again = parse(&bytes).expect("serialized message must parse");
            assert_eq!(again, msg);
            assert_eq!(again.to_bytes(), bytes);
        }
        Err(e) => {
            let _ = e.reason_phrase();
            let _ = reject_unparseable(data, &e);
        }
    }
});
