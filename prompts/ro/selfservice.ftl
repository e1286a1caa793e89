# Autoservire: cele mai apropiate servicii, citite câte trei.
# $phone vine deja cifră cu cifră; $hours este "none" când e închis azi; $address este "none" când lipsește.

services-intro = Iată serviciile cele mai apropiate.
services-item =
    { $name }, { $address ->
        [none] în { $town }.
       *[other] la adresa { $address }, în { $town }.
    } Telefon: { $phone }. { $hours ->
        [none] Astăzi este închis.
       *[other] Astăzi este deschis: { $hours }.
    }
services-options = Pentru a asculta din nou, apăsați 1. Pentru un operator, apăsați 2. Pentru alte trei servicii, apăsați 9.
services-none = Nu am găsit servicii lângă dumneavoastră. Vă transfer la un operator.
services-no-more = Nu mai sunt alte servicii.

# The readback's services sent by text message (config/ivr.toml, [nodes.self-service.sms]). The
# text is `services-item` per service (with the phone as written), then `sms-portal`.
services-sms-offer = Pentru a primi aceste servicii prin SMS, apăsați { $digit }.
services-sms-sent = V-am trimis un SMS cu aceste servicii.
services-sms-failed = Nu am putut trimite SMS-ul.
sms-portal = Mai multe informații: { $portal }
