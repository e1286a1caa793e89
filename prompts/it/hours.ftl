# Out of hours: when we open again, the portal, and what the caller can do now.

hours-closed = Ora gli operatori non sono disponibili.
hours-next-opening =
    { $day ->
        [today] Riapriamo oggi alle { $hour }{ $minute ->
            [0] {""}
           *[other] { " e " }{ $minute }
        }.
        [tomorrow] Riapriamo domani alle { $hour }{ $minute ->
            [0] {""}
           *[other] { " e " }{ $minute }
        }.
       *[other] Riapriamo { $weekday ->
            [1] lunedì
            [2] martedì
            [3] mercoledì
            [4] giovedì
            [5] venerdì
            [6] sabato
           *[7] domenica
        } alle { $hour }{ $minute ->
            [0] {""}
           *[other] { " e " }{ $minute }
        }.
    }
hours-portal = Trovi molte informazioni su integrazionemigranti punto gov punto it.
hours-options = Per essere richiamato, premi 1. Per sentire i servizi vicino a te, sempre disponibili, premi 2.
