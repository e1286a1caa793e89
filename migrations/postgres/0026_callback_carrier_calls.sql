-- Callbacks placed through a Twilio-compatible carrier's REST API (console::callback): the
-- carrier's call sid (its status callbacks name it), and the SIP address its `<Dial><Sip>` rings
-- to reach the operator's browser leg (`sip:op-<user>@<node>;token=<token>`), read by whichever
-- node the carrier requests the call's TwiML from. The address is wiped when the attempt ends.
ALTER TABLE callback_attempts ADD COLUMN carrier_sid TEXT;
ALTER TABLE callback_attempts ADD COLUMN dial_target TEXT;
