# Meniuri: bun venit, limba, domeniul, codul poștal. Propoziții scurte, cuvinte simple: cine sună
# e adesea stresat, pe o linie slabă.

welcome = Bună ziua. Aceasta este linia gratuită pentru cetățenii străini, a Portalului Integrazione Migranti.
language-guess = Română, apăsați { $digit }.
language-option = Română, apăsați { $digit }.
language-more = Pentru alte limbi, apăsați { $digit }.
area-menu = Pentru cursuri de limba italiană, apăsați 1. Pentru muncă, apăsați 2. Pentru locuință, apăsați 3. Pentru sănătate, apăsați 4. Pentru copii și tineri, apăsați 5. Pentru mediere culturală, apăsați 6. Pentru informații despre portal, apăsați 7. Pentru un operator, apăsați 0.
portal-info = Portalul Integrazione Migranti adună serviciile pentru străini din toată Italia. Îl găsiți la integrazionemigranti punct gov punct it.
cap-ask = Introduceți codul poștal, cinci cifre. Pentru a sări, apăsați diez.
cap-landline = Sunați din zona { $province }? Apăsați 1 pentru da, 2 pentru nu. Sau introduceți codul poștal.
cap-invalid = Nu am găsit acest cod poștal. Încercați din nou, vă rog.
cap-placed = Bine. Căutăm lângă { $place }.
service-choice = Pentru serviciile cele mai apropiate, apăsați 1. Pentru a vorbi cu un operator, apăsați 2.
invalid-choice = Alegere greșită.
goodbye = Vă mulțumim pentru apel. La revedere.
# Spus de adaptoarele HTTP când o cerere nu poate fi procesată: apelantul e pus la rând, nu închis.
technical-problem = Ne pare rău, este o problemă tehnică. Vă punem în așteptare pentru un operator.
# The recording notice (after the welcome) and the confirmation of a refusal (key 9 during it).
recording-notice = Acest apel poate fi înregistrat pentru calitatea serviciului. Dacă nu doriți să fiți înregistrat, apăsați 9.
recording-refused = Bine. Acest apel nu va fi înregistrat.
