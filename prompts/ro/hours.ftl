# În afara programului: când redeschidem, portalul și ce poate face apelantul acum.

hours-closed = Acum operatorii nu sunt disponibili.
hours-next-opening =
    Redeschidem { $day ->
        [today] astăzi
        [tomorrow] mâine
       *[other] { $weekday ->
            [1] luni
            [2] marți
            [3] miercuri
            [4] joi
            [5] vineri
            [6] sâmbătă
           *[7] duminică
        }
    } la ora { $hour }{ $minute ->
        [0] {""}
        [30] { " și jumătate" }
       *[other] { " și " }{ $minute }
    }.
hours-portal = Găsiți multe informații pe integrazionemigranti punct gov punct it.
hours-options = Pentru a fi sunat înapoi, apăsați 1. Pentru serviciile de lângă dumneavoastră, disponibile oricând, apăsați 2.
