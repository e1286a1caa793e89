# Așteptarea unui operator și cererea de a fi sunat înapoi.
# Pluralul românesc: 1 minut, 2-19 minute, 20 de minute.

queue-enter = Vă transfer la un operator. Rămâneți pe linie, vă rog.
queue-position =
    { $position ->
        [1] Sunteți următorul.
       *[other] Sunteți numărul { $position } la rând.
    } { $minutes ->
        [0] Așteptarea este sub un minut.
        [one] Așteptarea este de aproximativ un minut.
        [few] Așteptarea este de aproximativ { $minutes } minute.
       *[other] Așteptarea este de aproximativ { $minutes } de minute.
    }
queue-callback-offer = Dacă preferați să fiți sunat înapoi, apăsați 1.
queue-transfer-failed = Ne pare rău, apelul nu a trecut. Vă pun din nou la rând, printre primii.
callback-confirmed = Mulțumim. Un operator vă va suna înapoi la acest număr cât mai curând.
voicemail-prompt = După semnalul sonor, lăsați un mesaj scurt cu numele dumneavoastră și de ce aveți nevoie. Apoi apăsați diez sau închideți.
