# Autoservicio: los servicios más cercanos, leídos de tres en tres.
# $phone llega ya separado cifra por cifra; $hours vale "none" si hoy está cerrado; $address (la
# calle, "Via Gramsci 17") vale "none" cuando el directorio no la tiene.

services-intro = Estos son los servicios más cercanos.
services-item =
    { $name }, { $address ->
        [none] en { $town }.
       *[other] en { $address }, { $town }.
    } Teléfono: { $phone }. { $hours ->
        [none] Hoy está cerrado.
       *[other] Hoy abre: { $hours }.
    }
services-options = Para escucharlos otra vez, pulse 1. Para un operador, pulse 2. Para tres servicios más, pulse 9.
services-none = No encontramos servicios cerca de usted. Le paso con un operador.
services-no-more = No hay más servicios.

# The readback's services sent by text message (config/ivr.toml, [nodes.self-service.sms]). The
# text is `services-item` per service (with the phone as written), then `sms-portal`.
services-sms-offer = Para recibir estos servicios por SMS, pulse { $digit }.
services-sms-sent = Le hemos enviado un SMS con estos servicios.
services-sms-failed = No hemos podido enviar el SMS.
sms-portal = Más información: { $portal }
