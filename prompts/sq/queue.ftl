# Pritja për një operator dhe kërkesa për t'u telefonuar.

queue-enter = Po ju lidh me një operator. Ju lutem qëndroni në linjë.
queue-position =
    { $position ->
        [1] Ju jeni i radhës.
       *[other] Jeni numri { $position } në radhë.
    } { $minutes ->
        [0] Pritja është më pak se një minutë.
        [one] Pritja është rreth një minutë.
       *[other] Pritja është rreth { $minutes } minuta.
    }
queue-callback-offer = Nëse preferoni t'ju telefonojmë ne, shtypni 1.
queue-transfer-failed = Na vjen keq, thirrja nuk kaloi. Jeni përsëri në radhë, ndër të parët.
callback-confirmed = Faleminderit. Një operator do t'ju telefonojë në këtë numër sa më shpejt.
voicemail-prompt = Pas sinjalit, lini një mesazh të shkurtër me emrin tuaj dhe çfarë ju nevojitet. Pastaj shtypni tastin e kryqit ose mbyllni telefonin.
