# Menus: welcome, language, service area, postal code. Short sentences: callers are often
# stressed, on poor lines, and not fluent in Italian.

welcome = Benvenuto. Questo è il numero verde per i cittadini stranieri del Portale Integrazione Migranti.
language-guess = Italiano, premi { $digit }.
language-option = Italiano, premi { $digit }.
language-more = Per altre lingue, premi { $digit }.
area-menu = Per i corsi di italiano, premi 1. Per il lavoro, premi 2. Per la casa, premi 3. Per la salute, premi 4. Per minori e seconde generazioni, premi 5. Per la mediazione interculturale, premi 6. Per informazioni sul portale, premi 7. Per un operatore, premi 0.
portal-info = Il Portale Integrazione Migranti raccoglie i servizi per i cittadini stranieri in tutta Italia. Lo trovi su integrazionemigranti punto gov punto it.
cap-ask = Digita il tuo CAP, il codice postale di cinque cifre. Per saltare, premi cancelletto.
cap-landline = Chiami dalla zona di { $province }? Premi 1 per sì, 2 per no. Oppure digita il tuo CAP.
cap-invalid = Questo CAP non risulta. Riprova, per favore.
cap-placed = Bene. Cerchiamo vicino a { $place }.
service-choice = Per sentire i servizi più vicini, premi 1. Per parlare con un operatore, premi 2.
invalid-choice = Scelta non valida.
goodbye = Grazie per aver chiamato. Arrivederci.
# Said by the HTTP adapters when a request cannot be processed: the caller is queued, never dropped.
technical-problem = Ci scusiamo, c'è un problema tecnico. La mettiamo in attesa per un operatore.
# The recording notice (after the welcome) and the confirmation of a refusal (key 9 during it).
recording-notice = Questa chiamata può essere registrata per la qualità del servizio. Se non vuoi essere registrato, premi 9.
recording-refused = Va bene. Questa chiamata non sarà registrata.
