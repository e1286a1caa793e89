# Libre-service : les services les plus proches, lus trois par trois.
# $phone arrive déjà chiffre par chiffre ; $hours vaut "none" si fermé aujourd'hui ; $address (la
# rue, "Via Gramsci 17") vaut "none" quand l'annuaire n'en a pas.

services-intro = Voici les services les plus proches.
services-item =
    { $name }, { $address ->
        [none] à { $town }.
       *[other] { $address }, à { $town }.
    } Téléphone : { $phone }. { $hours ->
        [none] Fermé aujourd'hui.
       *[other] Ouvert aujourd'hui : { $hours }.
    }
services-options = Pour réécouter, appuyez sur 1. Pour un conseiller, appuyez sur 2. Pour trois autres services, appuyez sur 9.
services-none = Nous n'avons trouvé aucun service près de chez vous. Je vous passe un conseiller.
services-no-more = Il n'y a pas d'autres services.

# The readback's services sent by text message (config/ivr.toml, [nodes.self-service.sms]). The
# text is `services-item` per service (with the phone as written), then `sms-portal`.
services-sms-offer = Pour recevoir ces services par SMS, appuyez sur { $digit }.
services-sms-sent = Nous vous avons envoyé un SMS avec ces services.
services-sms-failed = Nous n'avons pas pu envoyer le SMS.
sms-portal = Plus d'informations : { $portal }
