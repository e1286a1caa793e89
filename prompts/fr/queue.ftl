# Attente d'un conseiller et demande de rappel.

queue-enter = Je vous passe un conseiller. Merci de rester en ligne.
queue-position =
    { $position ->
        [1] Vous êtes le prochain.
       *[other] Vous êtes le numéro { $position } dans la file.
    } { $minutes ->
        [0] L'attente est de moins d'une minute.
        [one] L'attente est d'environ une minute.
       *[other] L'attente est d'environ { $minutes } minutes.
    }
queue-callback-offer = Si vous préférez être rappelé, appuyez sur 1.
queue-transfer-failed = Désolé, l'appel n'a pas abouti. Vous êtes de nouveau dans la file, parmi les premiers.
callback-confirmed = Merci. Un conseiller vous rappellera à ce numéro dès que possible.
voicemail-prompt = Après le bip, laissez un court message avec votre nom et ce dont vous avez besoin. Puis appuyez sur dièse, ou raccrochez.
