# Vetëshërbim: shërbimet më të afërta, tre nga tre.
# $phone vjen shifër pas shifre; $hours është "none" kur sot është mbyllur; $address "none" kur mungon.

services-intro = Ja shërbimet më të afërta.
services-item =
    { $name }, { $address ->
        [none] në { $town }.
       *[other] në { $address }, { $town }.
    } Telefoni: { $phone }. { $hours ->
        [none] Sot është mbyllur.
       *[other] Sot është hapur: { $hours }.
    }
services-options = Për t'i dëgjuar përsëri, shtypni 1. Për një operator, shtypni 2. Për tre shërbime të tjera, shtypni 9.
services-none = Nuk gjetëm shërbime pranë jush. Po ju lidh me një operator.
services-no-more = Nuk ka më shërbime.

# The readback's services sent by text message (config/ivr.toml, [nodes.self-service.sms]). The
# text is `services-item` per service (with the phone as written), then `sms-portal`.
services-sms-offer = Për t'i marrë këto shërbime me SMS, shtypni { $digit }.
services-sms-sent = Ju dërguam një SMS me këto shërbime.
services-sms-failed = Nuk arritëm ta dërgojmë SMS-në.
sms-portal = Më shumë informacion: { $portal }
