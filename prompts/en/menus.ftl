# Menus: welcome, language, service area, postal code. Plain words, short sentences.

welcome = Welcome. This is the free helpline for foreign citizens of the Portale Integrazione Migranti.
language-guess = English, press { $digit }.
language-option = English, press { $digit }.
language-more = For more languages, press { $digit }.
area-menu = For Italian language courses, press 1. For work, press 2. For housing, press 3. For health, press 4. For children and young people, press 5. For cultural mediation, press 6. For information about the portal, press 7. For an operator, press 0.
portal-info = The Portale Integrazione Migranti lists services for foreign citizens all over Italy. Find it at integrazionemigranti dot gov dot it.
cap-ask = Enter your postal code, the five digit CAP. To skip, press the hash key.
cap-landline = Are you calling from the { $province } area? Press 1 for yes, 2 for no. Or enter your postal code.
cap-invalid = We could not find this postal code. Please try again.
cap-placed = Good. We will look near { $place }.
service-choice = To hear the services nearest to you, press 1. To talk to an operator, press 2.
invalid-choice = Sorry, that is not an option.
goodbye = Thank you for calling. Goodbye.
# Said by the HTTP adapters when a request cannot be processed: the caller is queued, never dropped.
technical-problem = We are sorry, there is a technical problem. Please hold for an operator.
# The recording notice (after the welcome) and the confirmation of a refusal (key 9 during it).
recording-notice = This call may be recorded for quality. If you do not want to be recorded, press 9.
recording-refused = All right. This call will not be recorded.
