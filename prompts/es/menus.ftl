# Menús: bienvenida, idioma, área de servicio, código postal. Frases cortas y sencillas.

welcome = Bienvenido. Este es el teléfono gratuito para ciudadanos extranjeros del Portale Integrazione Migranti.
language-guess = Español, pulse { $digit }.
language-option = Español, pulse { $digit }.
language-more = Para otros idiomas, pulse { $digit }.
area-menu = Para cursos de italiano, pulse 1. Para trabajo, pulse 2. Para vivienda, pulse 3. Para salud, pulse 4. Para menores y jóvenes, pulse 5. Para mediación intercultural, pulse 6. Para información sobre el portal, pulse 7. Para un operador, pulse 0.
portal-info = El Portale Integrazione Migranti reúne los servicios para ciudadanos extranjeros en toda Italia. La dirección es integrazionemigranti punto gov punto it.
cap-ask = Marque su código postal italiano, el CAP, de cinco cifras. Para saltar, pulse la tecla almohadilla.
cap-landline = ¿Llama desde la zona de { $province }? Pulse 1 para sí, 2 para no. O marque su código postal.
cap-invalid = No encontramos ese código postal. Inténtelo de nuevo, por favor.
cap-placed = Muy bien. Buscamos cerca de { $place }.
service-choice = Para escuchar los servicios más cercanos, pulse 1. Para hablar con un operador, pulse 2.
invalid-choice = Esa opción no es válida.
goodbye = Gracias por llamar. Adiós.
# Said by the HTTP adapters when a request cannot be processed: the caller is queued, never dropped.
technical-problem = Lo sentimos, hay un problema técnico. Espere, le atenderá un operador.
# The recording notice (after the welcome) and the confirmation of a refusal (key 9 during it).
recording-notice = Esta llamada puede ser grabada para la calidad del servicio. Si no quiere ser grabado, pulse 9.
recording-refused = De acuerdo. Esta llamada no será grabada.
