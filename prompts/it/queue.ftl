# Waiting for an operator, and the callback request.

queue-enter = Ti passo un operatore. Resta in linea, per favore.
queue-position =
    { $position ->
        [1] Sei il prossimo.
       *[other] Sei il numero { $position } in coda.
    } { $minutes ->
        [0] L'attesa è di meno di un minuto.
        [one] L'attesa è di circa un minuto.
       *[other] L'attesa è di circa { $minutes } minuti.
    }
queue-callback-offer = Se preferisci essere richiamato, premi 1.
queue-transfer-failed = Ci scusiamo, la chiamata non è passata. Ti rimetto in coda, tra i primi.
callback-confirmed = Grazie. Un operatore ti richiamerà a questo numero appena possibile.
voicemail-prompt = Dopo il segnale acustico lascia un breve messaggio con il tuo nome e di cosa hai bisogno. Poi premi cancelletto, o riaggancia.
