# Self-service: the nearest services of the chosen area, read back three at a time.
# $phone arrives already spaced digit by digit; $hours is "none" when closed today; $address (the
# street, "Via Gramsci 17") is "none" when the directory has none.

services-intro = Ecco i servizi più vicini.
services-item =
    { $name }, { $address ->
        [none] a { $town }.
       *[other] in { $address }, a { $town }.
    } Telefono: { $phone }. { $hours ->
        [none] Oggi è chiuso.
       *[other] Oggi è aperto: { $hours }.
    }
services-options = Per riascoltare, premi 1. Per un operatore, premi 2. Per altri tre servizi, premi 9.
services-none = Non abbiamo trovato servizi vicino a te. Ti passo un operatore.
services-no-more = Non ci sono altri servizi.

# The readback's services sent by text message (config/ivr.toml, [nodes.self-service.sms]). The
# text is `services-item` per service (with the phone as written), then `sms-portal`.
services-sms-offer = Per ricevere questi servizi con un SMS, premi { $digit }.
services-sms-sent = Ti abbiamo mandato un SMS con questi servizi.
services-sms-failed = Non siamo riusciti a mandare l'SMS.
sms-portal = Altre informazioni: { $portal }
