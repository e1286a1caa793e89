# Self-service: the nearest services of the chosen area, read back three at a time.
# $phone arrives already spaced digit by digit; $hours is "none" when closed today; $address (the
# street, "Via Gramsci 17") is "none" when the directory has none.

services-intro = Here are the nearest services.
services-item =
    { $name }, { $address ->
        [none] in { $town }.
       *[other] at { $address }, { $town }.
    } Phone: { $phone }. { $hours ->
        [none] Closed today.
       *[other] Open today: { $hours }.
    }
services-options = To hear them again, press 1. For an operator, press 2. For three more, press 9.
services-none = We found no services near you. I will put you through to an operator.
services-no-more = There are no more services.

# The readback's services sent by text message (config/ivr.toml, [nodes.self-service.sms]). The
# text is `services-item` per service (with the phone as written), then `sms-portal`.
services-sms-offer = To get these services by text message, press { $digit }.
services-sms-sent = We have sent you a text message with these services.
services-sms-failed = We could not send the text message.
sms-portal = More information: { $portal }
